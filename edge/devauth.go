//go:build devauth

package edge

// The development authenticator exists only in binaries built with
// -tags devauth (make run, the bench scripts): a production build cannot
// accept these tokens, whatever its flags say.

import (
	"errors"
	"fmt"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
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
	key, err := seal.ReadHexKey(path, 32, create)
	if err != nil {
		return nil, fmt.Errorf("dev-auth key: %w", err)
	}
	return key, nil
}
