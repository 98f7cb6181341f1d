//go:build devauth

package edge

// The development authenticator exists only in binaries built with
// -tags devauth (make run, the bench scripts): a production build cannot
// accept these tokens, whatever its flags say.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Development tokens are HS256 JWTs signed with a local key. They exist so
// the system can be driven before the identity provider exists; the server
// accepts them only when started with --dev-auth.
const (
	devIssuer   = "caregrid-dev"
	devAudience = "caregrid"
	devClient   = "caregrid-dev-token"
)

type devClaims struct {
	Role   string `json:"role"`
	Client string `json:"client_id"`
}

// DevAuthenticator accepts tokens minted by MintDevToken with the same key.
type DevAuthenticator struct {
	Key []byte
	Now func() time.Time
}

func (a DevAuthenticator) Authenticate(token string) (Principal, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		return Principal{}, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	var (
		std    jwt.Claims
		custom devClaims
	)
	if err := tok.Claims(a.Key, &std, &custom); err != nil {
		return Principal{}, fmt.Errorf("%w: bad signature", ErrUnauthenticated)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: devIssuer, AnyAudience: jwt.Audience{devAudience}, Time: now()}, 30*time.Second); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if std.Expiry == nil {
		return Principal{}, fmt.Errorf("%w: token has no expiry", ErrUnauthenticated)
	}
	role, ok := messages.ParseRole(custom.Role)
	if !ok || std.Subject == "" {
		return Principal{}, fmt.Errorf("%w: token lacks a subject or a known role", ErrUnauthenticated)
	}
	return Principal{Subject: std.Subject, Role: role, Client: custom.Client, Expiry: std.Expiry.Time()}, nil
}

// MintDevToken signs a development token for subject acting as role.
func MintDevToken(key []byte, role messages.Role, subject string, ttl time.Duration, now time.Time) (string, error) {
	if role == messages.Role_ROLE_UNSPECIFIED || subject == "" {
		return "", errors.New("a role and a subject are required")
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	std := jwt.Claims{
		Issuer: devIssuer, Audience: jwt.Audience{devAudience}, Subject: subject,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.Signed(sig).Claims(std).Claims(devClaims{Role: role.Name(), Client: devClient}).Serialize()
}

// LoadDevKey reads the development signing key from path, creating a random
// one (mode 0600) when create is set and the file does not exist.
func LoadDevKey(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dev-auth key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("dev-auth key %s: want at least 32 hex-encoded bytes", path)
	}
	return key, nil
}
