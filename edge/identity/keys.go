package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Keys keeps the token signing keys. Time is cut into rotation periods;
// the key of a period is named after the period's start, so every node
// that needs it derives the same id and the first to insert it wins (a
// unique key decides). A key signs during its period, is published from
// before its period (the next key appears in the last quarter of the
// current one, so relying parties that cache the JWKS know it in time)
// until its last token has expired.
type Keys struct {
	db       *persistence.DB
	seal     *seal.Key
	rotation time.Duration
	// grace is how long after its period a key stays published: longer
	// than any token it signed lives.
	grace time.Duration
	now   func() time.Time

	mu       sync.Mutex
	loaded   []signingKey
	loadedAt time.Time
}

type signingKey struct {
	id        string
	private   *rsa.PrivateKey
	from      time.Time
	signUntil time.Time
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.private }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct {
	id  string
	key *rsa.PublicKey
}

func (k publicKey) ID() string                         { return k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key }

// refreshEvery bounds how stale a node's view of the keys may be.
const refreshEvery = time.Minute

func newKeys(db *persistence.DB, sk *seal.Key, rotation, grace time.Duration, now func() time.Time) *Keys {
	return &Keys{db: db, seal: sk, rotation: rotation, grace: grace, now: now}
}

// Signing is the key to sign with now.
func (k *Keys) Signing(ctx context.Context) (op.SigningKey, error) {
	now := k.now()
	keys, err := k.current(ctx, now, false)
	if err != nil {
		return nil, err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if !now.Before(keys[i].from) && now.Before(keys[i].signUntil) {
			return keys[i], nil
		}
	}
	return nil, errors.New("identity: no signing key for now")
}

// Published lists the keys relying parties may see tokens signed with.
func (k *Keys) Published(ctx context.Context) ([]op.Key, error) {
	keys, err := k.current(ctx, k.now(), false)
	if err != nil {
		return nil, err
	}
	out := make([]op.Key, 0, len(keys))
	for _, s := range keys {
		out = append(out, publicKey{id: s.id, key: &s.private.PublicKey})
	}
	return out, nil
}

// Verifying finds a published key by id, reloading once if it is unknown
// (another node may have just made it).
func (k *Keys) Verifying(ctx context.Context, id string) (*rsa.PublicKey, error) {
	for _, force := range []bool{false, true} {
		keys, err := k.current(ctx, k.now(), force)
		if err != nil {
			return nil, err
		}
		for _, s := range keys {
			if s.id == id {
				return &s.private.PublicKey, nil
			}
		}
	}
	return nil, fmt.Errorf("identity: unknown key %q", id)
}

// current returns the loaded keys, making this period's and, late in the
// period, the next one's when they are missing.
func (k *Keys) current(ctx context.Context, now time.Time, force bool) ([]signingKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	start := now.Truncate(k.rotation)
	want := []time.Time{start}
	if now.Sub(start) >= k.rotation*3/4 {
		want = append(want, start.Add(k.rotation))
	}
	fresh := !force && now.Sub(k.loadedAt) < refreshEvery && now.After(k.loadedAt.Add(-time.Second))
	if fresh && k.has(want) {
		return k.loaded, nil
	}
	if force && now.Sub(k.loadedAt) < time.Second {
		return k.loaded, nil // one reload a second at most, whatever kids callers send
	}
	if err := k.load(ctx, now); err != nil {
		return nil, err
	}
	if !k.has(want) {
		for _, from := range want {
			if err := k.create(ctx, from); err != nil {
				return nil, err
			}
		}
		if err := k.load(ctx, now); err != nil {
			return nil, err
		}
	}
	return k.loaded, nil
}

func (k *Keys) has(periods []time.Time) bool {
	for _, p := range periods {
		found := false
		for _, s := range k.loaded {
			found = found || s.id == keyID(p)
		}
		if !found {
			return false
		}
	}
	return true
}

func keyID(periodStart time.Time) string { return fmt.Sprintf("k%d", periodStart.Unix()) }

func (k *Keys) load(ctx context.Context, now time.Time) error {
	rows, err := k.db.PublishedSigningKeys(ctx, now)
	if err != nil {
		return err
	}
	loaded := make([]signingKey, 0, len(rows))
	for _, r := range rows {
		der, err := k.seal.Open(r.PrivateSealed, "signing-key/"+r.ID)
		if err != nil {
			return fmt.Errorf("identity: signing key %s does not open with this master key: %w", r.ID, err)
		}
		priv, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return fmt.Errorf("identity: signing key %s: %w", r.ID, err)
		}
		loaded = append(loaded, signingKey{id: r.ID, private: priv, from: r.CreatedAt, signUntil: r.SignUntil})
	}
	k.loaded, k.loadedAt = loaded, now
	return nil
}

func (k *Keys) create(ctx context.Context, from time.Time) error {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	id := keyID(from)
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &priv.PublicKey, KeyID: id, Algorithm: string(jose.RS256), Use: "sig"})
	if err != nil {
		return err
	}
	return k.db.AddSigningKey(ctx, persistence.SigningKey{
		ID: id, Algorithm: string(jose.RS256),
		PrivateSealed: k.seal.Seal(x509.MarshalPKCS1PrivateKey(priv), "signing-key/"+id),
		PublicJWK:     jwk, CreatedAt: from, SignUntil: from.Add(k.rotation),
		PublishUntil: from.Add(k.rotation + k.grace),
	})
}
