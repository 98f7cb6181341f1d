package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
)

const testIssuer = "http://127.0.0.1:9/oidc"

func testProvider(t *testing.T, db *persistence.DB, now func() time.Time) *Provider {
	t.Helper()
	master, err := seal.NewKey(bytes.Repeat([]byte{5}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{DB: db, Seal: master, Issuer: testIssuer, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// liveSession makes an account and a live session for it.
func liveSession(t *testing.T, db *persistence.DB, role string) (account, session string) {
	t.Helper()
	ctx := context.Background()
	account, session = uuid.NewString(), uuid.NewString()
	if err := db.CreateAccount(ctx, persistence.Account{ID: account, Username: "u-" + account, Role: role}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateClient(ctx, persistence.Client{ID: "c-" + session, Name: "c", Kind: "service"}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateSession(ctx, persistence.Session{ID: session, AccountID: account, ClientID: "c-" + session,
		AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return account, session
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifierAcceptsOnlyGenuineLiveTokens(t *testing.T) {
	db := pgtest.New(t)
	p := testProvider(t, db, time.Now)
	v := p.Verifier()
	ctx := context.Background()
	signing, err := p.Keys().Signing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	priv := signing.Key().(*rsa.PrivateKey)
	account, session := liveSession(t, db, "doctor")
	now := time.Now()
	claims := func(mod func(*accessClaims)) accessClaims {
		c := accessClaims{Claims: jwt.Claims{Issuer: testIssuer, Subject: account, Audience: jwt.Audience{"app", "caregrid"},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)),
			ID: session + ".abcdef0123456789"},
			Role: "doctor", Session: session, ClientID: "app"}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	good := sign(t, jose.RS256, priv, signing.ID(), claims(nil))
	got, err := v.Authenticate(good)
	if err != nil {
		t.Fatalf("a genuine token: %v", err)
	}
	if got.Subject != account || got.Role != messages.Role_ROLE_DOCTOR || got.Session != session || got.Client != "app" {
		t.Fatalf("principal = %+v", got)
	}

	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(`"doctor"`), []byte(`"admin"`), 1)) + "." + parts[2]
	unsignedHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + signing.ID() + `"}`))
	otherKey := mustRSA(t)

	cases := map[string]string{
		"alg none":                    unsignedHeader + "." + parts[1] + ".",
		"HS256 keyed with public key": sign(t, jose.HS256, pubPEM, signing.ID(), claims(nil)),
		"another RSA key, same kid":   sign(t, jose.RS256, otherKey, signing.ID(), claims(nil)),
		"unknown kid":                 sign(t, jose.RS256, priv, "k-unknown", claims(nil)),
		"tampered payload":            tampered,
		"expired": sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) {
			c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute))
		})),
		"not yet valid": sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute))
		})),
		"wrong issuer": sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.Issuer = "http://127.0.0.1:9/other" })),
		"wrong audience": sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) {
			c.Audience = jwt.Audience{"app", "someone-else"}
		})),
		"no session":      sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.Session = "" })),
		"unknown session": sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.Session = uuid.NewString() })),
		"unknown role":    sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.Role = "superuser" })),
		// An ID token: no token id of the session, no client_id, a nonce.
		"an ID token":                sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.ID, c.ClientID, c.Nonce = "", "", "n-1" })),
		"a nonce":                    sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.Nonce = "n-1" })),
		"an at_hash":                 sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.ATHash = "x" })),
		"another session's token id": sign(t, jose.RS256, priv, signing.ID(), claims(func(c *accessClaims) { c.ID = uuid.NewString() + ".abc" })),
		"garbage":                    "not.a.token",
	}
	for name, tok := range cases {
		if _, err := v.Authenticate(tok); !errors.Is(err, edge.ErrUnauthenticated) {
			t.Errorf("%s: err = %v, want ErrUnauthenticated", name, err)
		}
	}

	// Revoking the session ends the token: at once on this node (the
	// provider tells its verifier), and on another node once SessionCheckTTL
	// has passed since that node last asked the database. The other node's
	// clock stands still unless the test moves it, so the bound is checked
	// exactly, whatever the machine's speed.
	frozen := time.Now()
	var moved atomic.Int64
	other := testProvider(t, db, func() time.Time { return frozen.Add(time.Duration(moved.Load())) }).Verifier()
	if _, err := other.Authenticate(good); err != nil {
		t.Fatalf("another node: %v", err)
	}
	if ok, err := p.Sessions().Revoke(ctx, account, session); err != nil || !ok {
		t.Fatalf("revoke: %v, %v", ok, err)
	}
	if _, err := v.Authenticate(good); !errors.Is(err, edge.ErrUnauthenticated) {
		t.Fatalf("revoked session on the revoking node: %v", err)
	}
	moved.Store(int64(SessionCheckTTL))
	if _, err := other.Authenticate(good); !errors.Is(err, edge.ErrUnauthenticated) {
		t.Fatalf("another node %v after its last check of the session: %v, want ErrUnauthenticated", SessionCheckTTL, err)
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSigningKeysRotateAndStayPublishedUntilTheirTokensExpire(t *testing.T) {
	db := pgtest.New(t)
	clock := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	a := testProvider(t, db, now)
	b := testProvider(t, db, now) // a second node on the same database
	ctx := context.Background()
	k1, err := a.Keys().Signing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kb, _ := b.Keys().Signing(ctx); kb.ID() != k1.ID() {
		t.Fatalf("two nodes sign with different keys: %s and %s", k1.ID(), kb.ID())
	}
	// Late in the period the next key is published before it signs.
	clock = clock.Add(19 * time.Hour)
	a.keys.loadedAt = time.Time{}
	pub, err := a.Keys().Published(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 2 {
		t.Fatalf("published %d keys at 19h, want the current and the next", len(pub))
	}
	if k, _ := a.Keys().Signing(ctx); k.ID() != k1.ID() {
		t.Fatalf("signing with %s before its period", k.ID())
	}
	// In the next period the new key signs; the old one still verifies.
	clock = clock.Add(6 * time.Hour)
	a.keys.loadedAt, b.keys.loadedAt = time.Time{}, time.Time{}
	k2, _ := a.Keys().Signing(ctx)
	if k2.ID() == k1.ID() {
		t.Fatal("the key did not rotate")
	}
	if _, err := b.Keys().Verifying(ctx, k1.ID()); err != nil {
		t.Fatalf("the previous key no longer verifies on another node: %v", err)
	}
	// Once every token it signed has expired, it is gone.
	clock = clock.Add(a.cfg.SessionTTL + a.cfg.AccessTokenTTL + time.Hour)
	a.keys.loadedAt = time.Time{}
	if _, err := a.Keys().Verifying(ctx, k1.ID()); err == nil {
		t.Fatal("a key past its publication still verifies")
	}
	// Keys rest sealed: the stored private key is not a parseable key.
	var sealed []byte
	if err := db.Pool.QueryRow(ctx, `SELECT private_sealed FROM oidc_signing_keys WHERE id = $1`, k2.ID()).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS1PrivateKey(sealed); err == nil {
		t.Fatal("the signing key is stored in the clear")
	}
}

// BenchmarkVerifier: what the edge pays per request for a provider token,
// on first sight (signature, claims, session lookup) and after (caches).
func BenchmarkVerifier(b *testing.B) {
	db := pgtest.New(b)
	p, err := New(Config{DB: db, Seal: benchMaster(), Issuer: testIssuer})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	signing, err := p.Keys().Signing(ctx)
	if err != nil {
		b.Fatal(err)
	}
	account, session := uuid.NewString(), uuid.NewString()
	if err := db.CreateAccount(ctx, persistence.Account{ID: account, Username: "bench", Role: "doctor"}); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateClient(ctx, persistence.Client{ID: "bench", Name: "bench", Kind: "service"}); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateSession(ctx, persistence.Session{ID: session, AccountID: account, ClientID: "bench", AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: signing.Key()}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", signing.ID()))
	tok, _ := jwt.Signed(s).Claims(accessClaims{Claims: jwt.Claims{Issuer: testIssuer, Subject: account, Audience: jwt.Audience{"caregrid"},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)), ID: session + ".bench"}, Role: "doctor", Session: session, ClientID: "bench"}).Serialize()
	b.Run("first-sight", func(b *testing.B) {
		for b.Loop() {
			v := p.newVerifier() // empty caches: every call verifies and looks the session up
			if _, err := v.Authenticate(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		v := p.Verifier()
		for b.Loop() {
			if _, err := v.Authenticate(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchMaster() *seal.Key {
	k, _ := seal.NewKey(bytes.Repeat([]byte{9}, seal.KeySize))
	return k
}
