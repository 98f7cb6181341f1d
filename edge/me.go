package edge

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
)

// Sessions is what /v1/me needs of the identity provider.
type Sessions interface {
	// List returns an account's live sessions, newest first.
	List(ctx context.Context, accountID string) ([]SessionInfo, error)
	// Revoke ends one of the account's own sessions; false when it has no
	// such live session.
	Revoke(ctx context.Context, accountID, sessionID string) (bool, error)
}

// SessionInfo is one login session as its owner sees it.
type SessionInfo struct {
	ID            string    `json:"id"`
	Client        string    `json:"client_id"`
	Methods       []string  `json:"amr"`
	CreatedAt     time.Time `json:"created_at"`
	LastUsedAt    time.Time `json:"last_used_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	SourceAddress string    `json:"source_address,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
	Current       bool      `json:"current"`
}

// Mount is a net/http handler served under Prefix (the OpenID Provider).
type Mount struct {
	Prefix  string
	Handler http.Handler
}

// mountTimeout bounds one request to a mounted handler.
const mountTimeout = 30 * time.Second

func (s *Server) mount(m Mount) {
	// The adaptor's request context is fasthttp's RequestCtx, whose Done
	// races with Server.Shutdown (seen under -race when a database call
	// watched it). The handler gets a context of its own instead: the
	// request's values, its own deadline, no fasthttp cancellation.
	inner := m.Handler
	detached := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), mountTimeout)
		defer cancel()
		inner.ServeHTTP(w, r.WithContext(ctx))
	})
	h := adaptor.HTTPHandler(detached)
	s.app.All(m.Prefix, checkForm, h)
	s.app.All(m.Prefix+"/*", checkForm, h)
}

// checkForm refuses a form body with a value that is not UTF-8 text, so
// that the mounted handlers (sign-in, password recovery, the token
// endpoint) never take such a value to the database. Path and query are
// already checked (checkRequest).
func checkForm(c *fiber.Ctx) error {
	mt, _, _ := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if mt != fiber.MIMEApplicationForm {
		return c.Next()
	}
	var bad []byte
	c.Request().PostArgs().VisitAll(func(k, v []byte) {
		if bad == nil && (!CleanString(string(k)) || !CleanString(string(v))) {
			bad = k
		}
	})
	if bad != nil {
		return malformed("form fields must be UTF-8 text", FieldError{safeName(bad), "must be UTF-8 without control characters"})
	}
	return c.Next()
}

type meJSON struct {
	Subject   string    `json:"subject"`
	Role      string    `json:"role"`
	Client    string    `json:"client_id,omitempty"`
	Session   string    `json:"session_id,omitempty"`
	ExpiresAt time.Time `json:"token_expires_at"`
}

// me says who the token is for.
func (s *Server) me(c *fiber.Ctx) error {
	p, _ := c.Locals(principalKey).(Principal)
	return c.JSON(meJSON{Subject: p.Subject, Role: p.Role.Name(), Client: p.Client, Session: p.Session, ExpiresAt: p.Expiry.UTC()})
}

func (s *Server) mySessions(c *fiber.Ctx) error {
	p, _ := c.Locals(principalKey).(Principal)
	if s.cfg.Sessions == nil || p.Session == "" {
		return c.JSON(fiber.Map{"sessions": []SessionInfo{}})
	}
	list, err := s.cfg.Sessions.List(c.UserContext(), p.Subject)
	if err != nil {
		return err
	}
	for i := range list {
		list[i].Current = list[i].ID == p.Session
	}
	return c.JSON(fiber.Map{"sessions": list})
}

func (s *Server) endMySession(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	p, _ := c.Locals(principalKey).(Principal)
	id := c.Params("id")
	if !isUUID(id) {
		return malformed("the session id must be a UUID", FieldError{"id", "must be a UUID"})
	}
	if s.cfg.Sessions == nil {
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such session")
	}
	ok, err := s.cfg.Sessions.Revoke(c.UserContext(), p.Subject, normalUUID(id))
	if err != nil {
		return err
	}
	if !ok {
		return problem(fiber.StatusNotFound, "not-found", "Not found", "you have no live session with this id")
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// AnyOf accepts a token any of auths accepts, asking them in order.
func AnyOf(auths ...Authenticator) Authenticator { return anyOf(auths) }

type anyOf []Authenticator

func (a anyOf) Authenticate(token string) (Principal, error) {
	err := ErrUnauthenticated
	for _, auth := range a {
		p, e := auth.Authenticate(token)
		if e == nil {
			return p, nil
		}
		if !errors.Is(e, ErrUnauthenticated) {
			err = e // an outage beats a refusal: the caller should retry
		}
	}
	return Principal{}, err
}
