package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Verifier checks the provider's access tokens for the edge: RS256 only
// (so neither "none" nor an HMAC keyed with the public key passes), a key
// the provider published, issuer, audience, expiry and not-before, a known
// role, and a live session. Verified tokens are cached (by value, until
// they expire); the session is checked on every request against a cache
// that SessionCheckTTL bounds, so a revocation elsewhere takes effect on
// this node within that time, and at once for revocations made here.
type Verifier struct {
	keys     *Keys
	db       *persistence.DB
	issuer   string
	audience string
	now      func() time.Time

	tokens   *expirable.LRU[string, verified]
	sessions *expirable.LRU[string, sessionCheck]
}

// sessionCheck is what the database said of a session, and when (by the
// verifier's clock, which bounds the trust; the LRU's own expiry only
// bounds memory).
type sessionCheck struct {
	live bool
	at   time.Time
}

// SessionCheckTTL bounds how long a node trusts that a session is live.
const SessionCheckTTL = 2 * time.Second

type verified struct {
	principal edge.Principal
	session   string
}

type accessClaims struct {
	jwt.Claims
	Role     string `json:"role"`
	Session  string `json:"sid"`
	ClientID string `json:"client_id"`
	// An ID token carries these; an access token never does.
	Nonce  string `json:"nonce"`
	ATHash string `json:"at_hash"`
}

func (p *Provider) newVerifier() *Verifier {
	return &Verifier{
		keys: p.keys, db: p.cfg.DB, issuer: p.cfg.Issuer, audience: p.cfg.Audience, now: p.cfg.now,
		tokens:   expirable.NewLRU[string, verified](10_000, nil, time.Minute),
		sessions: expirable.NewLRU[string, sessionCheck](100_000, nil, SessionCheckTTL),
	}
}

var errInvalid = edge.ErrUnauthenticated

func (v *Verifier) Authenticate(token string) (edge.Principal, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, ok := v.tokens.Get(token)
	if !ok || !v.now().Before(got.principal.Expiry) {
		var err error
		if got, err = v.verify(ctx, token); err != nil {
			return edge.Principal{}, err
		}
		v.tokens.Add(token, got)
	}
	live, err := v.sessionLive(ctx, got.session)
	if err != nil {
		return edge.Principal{}, err
	}
	if !live {
		return edge.Principal{}, fmt.Errorf("%w: the session has ended", errInvalid)
	}
	return got.principal, nil
}

func (v *Verifier) verify(ctx context.Context, token string) (verified, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		return verified{}, fmt.Errorf("%w: malformed token", errInvalid)
	}
	key, err := v.keys.Verifying(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return verified{}, fmt.Errorf("%w: unknown signing key", errInvalid)
	}
	var c accessClaims
	if err := tok.Claims(key, &c); err != nil {
		return verified{}, fmt.Errorf("%w: bad signature", errInvalid)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.audience}, Time: v.now()}, 30*time.Second); err != nil {
		return verified{}, fmt.Errorf("%w: %v", errInvalid, err)
	}
	if c.Expiry == nil || c.Subject == "" || c.Session == "" {
		return verified{}, fmt.Errorf("%w: token lacks expiry, subject or session", errInvalid)
	}
	// Only access tokens open the API. The provider signs ID tokens with the
	// same key, for the same issuer, and the API's audience may be among
	// theirs; an access token's id is "<session>.<random>" (storage.go), it
	// names its client, and it has no nonce or at_hash.
	if !strings.HasPrefix(c.ID, c.Session+".") || c.ClientID == "" || c.Nonce != "" || c.ATHash != "" {
		return verified{}, fmt.Errorf("%w: not an access token", errInvalid)
	}
	role, ok := messages.ParseRole(c.Role)
	if !ok {
		return verified{}, fmt.Errorf("%w: token has no known role", errInvalid)
	}
	return verified{principal: edge.Principal{Subject: c.Subject, Role: role, Client: c.ClientID, Expiry: c.Expiry.Time(), Session: c.Session}, session: c.Session}, nil
}

func (v *Verifier) sessionLive(ctx context.Context, id string) (bool, error) {
	now := v.now()
	if c, ok := v.sessions.Get(id); ok && now.Sub(c.at) < SessionCheckTTL {
		return c.live, nil
	}
	s, err := v.db.SessionByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		v.sessions.Add(id, sessionCheck{live: false, at: now})
		return false, nil
	}
	if err != nil {
		return false, err
	}
	live := s.Live(now)
	v.sessions.Add(id, sessionCheck{live: live, at: now})
	return live, nil
}

// Forget drops what this node knows of a session (it was just revoked here).
func (v *Verifier) Forget(sessionID string) { v.sessions.Remove(sessionID) }
