package edge

import (
	"context"
	"time"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
)

// Accounts is what /v1/accounts needs of the identity provider. It decides
// access (admins only) and audits, as grains do for records; its errors
// are the grains' typed errors.
type Accounts interface {
	// Create makes an account without a password and emails its owner a
	// link to choose one. replayed is set when key already made it.
	Create(ctx context.Context, c *messages.Caller, in AccountInput, key string) (acct AccountInfo, replayed bool, err error)
	Get(ctx context.Context, c *messages.Caller, id string) (AccountInfo, error)
	// Act applies an admin action: unlock, disable, enable, reset-totp or send-reset.
	Act(ctx context.Context, c *messages.Caller, id, action string) (AccountInfo, error)
}

// AccountInput is the body of POST /v1/accounts.
type AccountInput struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Email    string `json:"email"`
	// RecordID links a doctor or patient account to its record; it becomes the account's id.
	RecordID string `json:"record_id"`
}

// AccountInfo is an account as admins see it: never a secret.
type AccountInfo struct {
	ID           string     `json:"id"`
	Username     string     `json:"username"`
	Role         string     `json:"role"`
	Email        string     `json:"email,omitempty"`
	PasswordSet  bool       `json:"password_set"`
	TOTPEnrolled bool       `json:"totp_enrolled"`
	LockedUntil  *time.Time `json:"locked_until,omitempty"`
	Disabled     bool       `json:"disabled"`
	Verified     bool       `json:"email_verified"`
	CreatedAt    time.Time  `json:"created_at"`
}

// accountsOrUnavailable is the account service; without one a non-admin
// still learns they may not call the route, not that it is down.
func (s *Server) accountsOrUnavailable(c *messages.Caller) (Accounts, error) {
	if s.cfg.Accounts == nil {
		if d := access.ManageAccounts(c); !d.Allowed {
			return nil, forbidden(d.Reason)
		}
		return nil, problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no identity provider")
	}
	return s.cfg.Accounts, nil
}

func (s *Server) createAccount(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in AccountInput
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	accounts, err := s.accountsOrUnavailable(caller)
	if err != nil {
		return err
	}
	acct, replayed, err := accounts.Create(c.UserContext(), caller, in, key)
	if err != nil {
		return err
	}
	return created(c, "/v1/accounts/"+acct.ID, replayed, acct)
}

func (s *Server) getAccount(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	accounts, err := s.accountsOrUnavailable(caller)
	if err != nil {
		return err
	}
	acct, err := accounts.Get(c.UserContext(), caller, id)
	if err != nil {
		return err
	}
	return c.JSON(acct)
}

func (s *Server) accountAction(action string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := noBody(c); err != nil {
			return err
		}
		id, err := uuidParam(c)
		if err != nil {
			return err
		}
		caller, err := s.caller(c)
		if err != nil {
			return err
		}
		accounts, err := s.accountsOrUnavailable(caller)
		if err != nil {
			return err
		}
		acct, err := accounts.Act(c.UserContext(), caller, id, action)
		if err != nil {
			return err
		}
		return c.JSON(acct)
	}
}
