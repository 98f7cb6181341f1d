package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeIdP is a hospital identity provider as caregrid sees it: a JWKS
// document over HTTP, and tokens signed with the keys in it.
type fakeIdP struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey
}

func newFakeIdP(t *testing.T) *fakeIdP {
	idp := &fakeIdP{keys: map[string]*rsa.PrivateKey{}}
	idp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.mu.Lock()
		defer idp.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range idp.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(idp.srv.Close)
	idp.rotate(t, "key-1")
	return idp
}

func (idp *fakeIdP) rotate(t *testing.T, kid string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp.mu.Lock()
	idp.keys[kid] = k
	idp.mu.Unlock()
}

func (idp *fakeIdP) token(t *testing.T, kid string, claims map[string]any) string {
	idp.mu.Lock()
	k := idp.keys[kid]
	idp.mu.Unlock()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestExternalIssuerTokensMapToRoles(t *testing.T) {
	idp := newFakeIdP(t)
	issuer := idp.srv.URL + "/realms/hospital"
	cfg := []ExternalIssuer{{Issuer: issuer, Audience: "caregrid", JWKSURL: idp.srv.URL + "/certs",
		SubjectClaim: "caregrid_id", RoleClaim: "groups",
		Roles: []RoleMapping{{Value: "cg-doctors", Role: "doctor"}, {Value: "cg-desk", Role: "receptionist"}}}}
	// The same configuration through its file form.
	path := filepath.Join(t.TempDir(), "issuers.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadExternalIssuers(path)
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewExternal(context.Background(), loaded)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": issuer, "aud": []string{"caregrid", "other"}, "sub": "idp-user-7", "caregrid_id": "d-1",
			"groups": []string{"staff", "cg-doctors", "cg-desk"}, "azp": "ward-app", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	p, err := x.Authenticate(idp.token(t, "key-1", claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	// The first mapping the token has wins: doctor, listed before desk.
	if p.Subject != "d-1" || p.Role != messages.Role_ROLE_DOCTOR || p.Client != "ward-app" || p.Session != "" {
		t.Fatalf("principal = %+v", p)
	}
	desk, err := x.Authenticate(idp.token(t, "key-1", claims(func(c map[string]any) { c["groups"] = "cg-desk" })))
	if err != nil || desk.Role != messages.Role_ROLE_RECEPTIONIST {
		t.Fatalf("a single-string group: %+v, %v", desk, err)
	}
	// The IdP rotates its key: a token with the new kid verifies after a refetch.
	idp.rotate(t, "key-2")
	if _, err := x.Authenticate(idp.token(t, "key-2", claims(nil))); err != nil {
		t.Fatalf("a rotated key: %v", err)
	}
	other := newFakeIdP(t)
	for name, tok := range map[string]string{
		"unmapped groups":                     idp.token(t, "key-1", claims(func(c map[string]any) { c["groups"] = []string{"staff"} })),
		"no subject":                          idp.token(t, "key-1", claims(func(c map[string]any) { delete(c, "caregrid_id") })),
		"wrong audience":                      idp.token(t, "key-1", claims(func(c map[string]any) { c["aud"] = "someone-else" })),
		"expired":                             idp.token(t, "key-1", claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })),
		"not yet valid":                       idp.token(t, "key-1", claims(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() })),
		"unknown issuer":                      idp.token(t, "key-1", claims(func(c map[string]any) { c["iss"] = "https://evil.example" })),
		"another IdP's key, same kid and iss": other.token(t, "key-1", claims(nil)),
	} {
		if _, err := x.Authenticate(tok); !errors.Is(err, edge.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", name, err)
		}
	}
}

func TestExternalIssuerConfigIsChecked(t *testing.T) {
	for name, e := range map[string]ExternalIssuer{
		"plain http issuer": {Issuer: "http://idp.example", Audience: "a", JWKSURL: "https://idp.example/k", RoleClaim: "r", Roles: []RoleMapping{{"x", "doctor"}}},
		"no roles":          {Issuer: "https://idp.example", Audience: "a", JWKSURL: "https://idp.example/k", RoleClaim: "r"},
		"unknown role":      {Issuer: "https://idp.example", Audience: "a", JWKSURL: "https://idp.example/k", RoleClaim: "r", Roles: []RoleMapping{{"x", "root"}}},
		"no audience":       {Issuer: "https://idp.example", JWKSURL: "https://idp.example/k", RoleClaim: "r", Roles: []RoleMapping{{"x", "doctor"}}},
	} {
		if _, err := NewExternal(context.Background(), []ExternalIssuer{e}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
