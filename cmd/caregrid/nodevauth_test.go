//go:build !devauth

package main

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestProductionBuildHasNoDevelopmentTokens: without -tags devauth the
// binary cannot accept development tokens whatever its flags, and an HS256
// token like them is refused.
func TestProductionBuildHasNoDevelopmentTokens(t *testing.T) {
	cfg, err := serveFlags([]string{"--data-dir", t.TempDir()})
	if err != nil || cfg.DevAuth {
		t.Fatalf("serveFlags(defaults) = %+v, %v; want dev-auth off", cfg, err)
	}
	if _, err := devAuthenticator(t.TempDir() + "/k"); !errors.Is(err, errNoDevAuth) {
		t.Fatalf("devAuthenticator in a production build: %v", err)
	}
	if err := devTokenCmd([]string{"--role", "admin", "--sub", "x"}); !errors.Is(err, errNoDevAuth) {
		t.Fatalf("dev-token in a production build: %v", err)
	}
	s := startTestServer(t)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: bytes.Repeat([]byte{7}, 32)}, (&jose.SignerOptions{}).WithType("JWT"))
	forged, _ := jwt.Signed(signer).Claims(map[string]any{"iss": "caregrid-dev", "aud": "caregrid", "sub": "a-1", "role": "admin",
		"exp": time.Now().Add(time.Hour).Unix()}).Serialize()
	r := s.do("POST", "/v1/patients", forged, patientBody("2005042129809"))
	expect(t, "register with a development-style token", r, 401)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
}
