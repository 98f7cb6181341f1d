//go:build devauth

package edge

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
)

func TestDevAuthenticator(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a := DevAuthenticator{Key: key, Now: func() time.Time { return now }}
	tok, err := MintDevToken(key, messages.Role_ROLE_DOCTOR, "dr-1", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate(tok)
	if err != nil || p.Subject != "dr-1" || p.Role != messages.Role_ROLE_DOCTOR || !p.Expiry.Equal(now.Add(time.Hour)) {
		t.Fatalf("Authenticate(valid) = %+v, %v", p, err)
	}
	mint := func(key []byte, ttl time.Duration, at time.Time) string {
		t.Helper()
		tok, err := MintDevToken(key, messages.Role_ROLE_ADMIN, "x", ttl, at)
		if err != nil {
			t.Fatalf("MintDevToken: %v", err)
		}
		return tok
	}
	otherKey := bytes.Repeat([]byte{2}, 32)
	other := mint(otherKey, time.Hour, now)
	expired := mint(key, time.Minute, now.Add(-2*time.Hour))
	// Each bad token is good but for the one thing its name says.
	if _, err := (DevAuthenticator{Key: otherKey, Now: a.Now}).Authenticate(other); err != nil {
		t.Fatalf("the other key's token under the other key: %v", err)
	}
	if _, err := (DevAuthenticator{Key: key, Now: func() time.Time { return now.Add(-2 * time.Hour) }}).Authenticate(expired); err != nil {
		t.Fatalf("the expired token while it was valid: %v", err)
	}
	parts := strings.Split(tok, ".")
	unsigned := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	for name, bad := range map[string]string{"other key": other, "expired": expired, "alg none": unsigned, "garbage": "abc", "empty": ""} {
		if _, err := a.Authenticate(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%s) = %v, want ErrUnauthenticated", name, err)
		}
	}
	if _, err := MintDevToken(key, messages.Role_ROLE_UNSPECIFIED, "x", time.Hour, now); err == nil {
		t.Error("MintDevToken(no role) succeeded")
	}
}

// BenchmarkAuthenticate compares verifying a token on every request with
// the cache the server puts in front of it.
func BenchmarkAuthenticate(b *testing.B) {
	key := bytes.Repeat([]byte{1}, 32)
	tok, err := MintDevToken(key, messages.Role_ROLE_DOCTOR, "dr-1", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for name, a := range map[string]Authenticator{
		"verify":        DevAuthenticator{Key: key},
		"verify-cached": NewCachingAuthenticator(DevAuthenticator{Key: key}, 100, time.Minute),
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.Authenticate(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
