package edge

import (
	"errors"
	"time"

	"github.com/caregrid/caregrid/messages"
)

// Principal is who an access token says the caller is.
type Principal struct {
	Subject string
	Role    messages.Role
	Client  string
	// Session is the login session the token belongs to ("" for development tokens).
	Session string
	// Expiry is when the token stops being valid.
	Expiry time.Time
}

// Authenticator checks a bearer token and says who presented it. The
// identity work replaces the development authenticator with OIDC; handlers
// only ever see a Principal.
type Authenticator interface {
	Authenticate(token string) (Principal, error)
}

// ErrUnauthenticated is returned by an Authenticator for a missing, malformed,
// forged or expired token.
var ErrUnauthenticated = errors.New("unauthenticated")
