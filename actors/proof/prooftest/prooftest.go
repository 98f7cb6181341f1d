// Package prooftest gives in-process cluster tests what a real node has:
// member certificates for the remoting's mutual TLS, and a Checker whose
// tokens a test can mint. The tokens are HMAC-signed by a key made per
// process; the real token verifiers (the embedded provider's, external
// issuers') are tested through real nodes in cmd/caregrid.
package prooftest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/caregrid/caregrid/actors/proof"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/proto"
)

var key = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}()

// Sign returns a copy of c carrying a token that Checker's verifier accepts
// for c's subject, role and client.
func Sign(c *messages.Caller) *messages.Caller {
	out := proto.Clone(c).(*messages.Caller)
	body := base64.RawURLEncoding.EncodeToString([]byte(c.GetSubject() + "\x00" + c.GetRole().String() + "\x00" + c.GetClient()))
	out.Token = body + "." + base64.RawURLEncoding.EncodeToString(mac(body))
	return out
}

func mac(body string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(body))
	return h.Sum(nil)
}

func verify(token string) (proof.Principal, error) {
	body, sig, ok := strings.Cut(token, ".")
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(got, mac(body)) {
		return proof.Principal{}, proof.ErrInvalidToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return proof.Principal{}, proof.ErrInvalidToken
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 {
		return proof.Principal{}, proof.ErrInvalidToken
	}
	return proof.Principal{Subject: parts[0], Role: messages.Role(messages.Role_value[parts[1]]), Client: parts[2]}, nil
}

// Checker is a Checker that accepts the tokens Sign makes.
func Checker() *proof.Checker {
	c := proof.NewChecker(nil)
	c.SetVerifier(verify)
	return c
}

var (
	certsOnce sync.Once
	certsDir  string
	certs     devcerts.Files
	certsErr  error
)

// TLS is a member's mutual TLS under one CA shared by the whole test
// process (made once; Cleanup removes it).
func TLS(t testing.TB) *cluster.TLS {
	t.Helper()
	certsOnce.Do(func() {
		if certsDir, certsErr = os.MkdirTemp("", "caregrid-prooftest-"); certsErr == nil {
			certs, certsErr = devcerts.Generate(certsDir, 1, cluster.PeerName, []string{"127.0.0.1"})
		}
	})
	if certsErr != nil {
		t.Fatalf("member certificates: %v", certsErr)
	}
	m := certs.Members[0]
	return &cluster.TLS{CAFile: certs.CA, CertFile: m.Cert, KeyFile: m.Key}
}

// Main runs a package's tests and removes the certificates after them.
func Main(m *testing.M) {
	code := m.Run()
	if certsDir != "" {
		os.RemoveAll(certsDir)
	}
	os.Exit(code)
}
