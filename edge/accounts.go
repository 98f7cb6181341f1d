package edge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/search"
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
	// List returns a page of accounts by username; more is set when
	// another page follows.
	List(ctx context.Context, c *messages.Caller, q AccountQuery) (accounts []AccountInfo, more bool, err error)
	// SetProfile changes a staff account's display name and clinic.
	SetProfile(ctx context.Context, c *messages.Caller, id string, p AccountProfile) (AccountInfo, error)
	// Act applies an admin action: unlock, disable, enable, reset-totp or send-reset.
	Act(ctx context.Context, c *messages.Caller, id, action string) (AccountInfo, error)
	// Clients lists the provider's clients; CreateServiceClient registers
	// a service client and the account it acts as, and returns its secret
	// (the only time it is shown).
	Clients(ctx context.Context, c *messages.Caller) ([]ClientInfo, error)
	CreateServiceClient(ctx context.Context, c *messages.Caller, in ClientInput) (ClientInfo, string, error)
}

// ClientInput is the body of POST /v1/clients: a service client's name and
// the role it acts in (service: a pharmacy's prescriptions only).
type ClientInput struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// ClientInfo is a client as admins see it: never its secret.
type ClientInfo struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Kind         string   `json:"kind"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	AccountID    string   `json:"account_id,omitempty"`
	Role         string   `json:"role,omitempty"`
	// Secret is set once, in the answer to the client's creation.
	Secret string `json:"secret,omitempty"`
}

// listClients answers GET /v1/clients (admins).
func (s *Server) listClients(c *fiber.Ctx) error {
	caller, accounts, err := s.accountService(c)
	if err != nil {
		return err
	}
	out, err := accounts.Clients(c.UserContext(), caller)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"clients": out})
}

// createServiceClient answers POST /v1/clients (admins): 201 with the
// secret, once.
func (s *Server) createServiceClient(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in ClientInput
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	caller, accounts, err := s.accountService(c)
	if err != nil {
		return err
	}
	info, secret, err := accounts.CreateServiceClient(c.UserContext(), caller, in)
	if err != nil {
		return err
	}
	info.Secret = secret
	c.Location("/v1/clients/" + info.ID)
	return c.Status(fiber.StatusCreated).JSON(info)
}

// AccountInput is the body of POST /v1/accounts.
type AccountInput struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Email    string `json:"email"`
	// RecordID links a doctor or patient account to its record; it becomes the account's id.
	RecordID string `json:"record_id"`
	// DisplayName and ClinicID are a receptionist's or admin's name and
	// clinic as readers of an access log see them (a doctor's and a
	// patient's come from their record).
	DisplayName string `json:"display_name"`
	ClinicID    string `json:"clinic_id"`
}

// AccountProfile is the body of PATCH /v1/accounts/{id}: a staff
// account's display name and clinic (null or "" clears the clinic).
type AccountProfile struct {
	DisplayName *string `json:"display_name"`
	ClinicID    *string `json:"clinic_id"`
}

// AccountQuery is GET /v1/accounts?role=&q=&status=&limit=&cursor=.
type AccountQuery struct {
	Role, Q, Status string
	After           string // the last username of the previous page
	Limit           int
}

// AccountInfo is an account as admins see it: never a secret.
type AccountInfo struct {
	ID           string     `json:"id"`
	Username     string     `json:"username"`
	DisplayName  string     `json:"display_name"`
	Role         string     `json:"role"`
	ClinicID     string     `json:"clinic_id,omitempty"`
	ClinicName   string     `json:"clinic_name,omitempty"`
	Email        string     `json:"email,omitempty"`
	PasswordSet  bool       `json:"password_set"`
	TOTPEnrolled bool       `json:"totp_enrolled"`
	LockedUntil  *time.Time `json:"locked_until,omitempty"`
	Disabled     bool       `json:"disabled"`
	Verified     bool       `json:"email_verified"`
	CreatedAt    time.Time  `json:"created_at"`
}

// accountService is the caller and the account service of a request.
func (s *Server) accountService(c *fiber.Ctx) (*messages.Caller, Accounts, error) {
	caller, err := s.caller(c)
	if err != nil {
		return nil, nil, err
	}
	accounts, err := s.accountsOrUnavailable(caller)
	return caller, accounts, err
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
	caller, accounts, err := s.accountService(c)
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
	return s.accountCall(c, func(ctx context.Context, a Accounts, caller *messages.Caller) (AccountInfo, error) {
		return a.Get(ctx, caller, id)
	})
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
		return s.accountCall(c, func(ctx context.Context, a Accounts, caller *messages.Caller) (AccountInfo, error) {
			return a.Act(ctx, caller, id, action)
		})
	}
}

// Account directory page sizes.
const (
	defaultAccountLimit = 50
	maxAccountLimit     = 200
)

// listAccounts answers GET /v1/accounts?role=&q=&status=&limit=&cursor=:
// the accounts by username, for admins.
func (s *Server) listAccounts(c *fiber.Ctx) error {
	caller, accounts, err := s.accountService(c)
	if err != nil {
		return err
	}
	if d := access.ManageAccounts(caller); !d.Allowed {
		// Refused before the query is read (others learn nothing from it),
		// by the service, which audits the attempt.
		_, _, err := accounts.List(c.UserContext(), caller, AccountQuery{})
		return err
	}
	q := AccountQuery{Role: c.Query("role"), Q: strings.TrimSpace(c.Query("q")), Status: c.Query("status"), Limit: defaultAccountLimit}
	var bad []FieldError
	if r, ok := messages.ParseRole(q.Role); q.Role != "" && (!ok || r == messages.Role_ROLE_UNSPECIFIED) {
		bad = append(bad, FieldError{"role", "must be one of patient, doctor, receptionist, admin, service"})
	}
	if q.Status != "" && !slices.Contains(persistence.AccountStatuses, q.Status) {
		bad = append(bad, FieldError{"status", "must be one of active, disabled, locked, unverified"})
	}
	if utf8.RuneCountInString(q.Q) > search.MaxQueryRunes {
		bad = append(bad, FieldError{"q", "must be at most 100 characters"})
	}
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxAccountLimit {
			bad = append(bad, FieldError{"limit", "must be 1 to 200"})
		}
		q.Limit = n
	}
	if raw := c.Query("cursor"); raw != "" {
		b, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil || !utf8.Valid(b) || len(b) > 64 {
			bad = append(bad, FieldError{"cursor", "must be a next_cursor from a previous page"})
		}
		q.After = string(b)
	}
	if len(bad) > 0 {
		return malformed("the query is not valid; see errors", bad...)
	}
	list, more, err := accounts.List(c.UserContext(), caller, q)
	if err != nil {
		return err
	}
	out := struct {
		Accounts   []AccountInfo `json:"accounts"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}{Accounts: list}
	if more {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(list[len(list)-1].Username))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// updateAccount answers PATCH /v1/accounts/{id}: a receptionist's or
// admin's display name and clinic (admins).
func (s *Server) updateAccount(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c, "application/merge-patch+json"); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := decodeStrict(c.Body(), &fields); err != nil {
		return err
	}
	var p AccountProfile
	for name, raw := range fields {
		var target **string
		switch name {
		case "display_name":
			target = &p.DisplayName
		case "clinic_id":
			target = &p.ClinicID
		default:
			return malformed("the body has a field this API does not know", FieldError{name, "is not a known field"})
		}
		v := ""
		if err := mergeValue(name, raw, &v); err != nil {
			return err
		}
		*target = &v
	}
	return s.accountCall(c, func(ctx context.Context, a Accounts, caller *messages.Caller) (AccountInfo, error) {
		return a.SetProfile(ctx, caller, id, p)
	})
}

// accountCall answers with the account call makes of the account service
// for the proven caller.
func (s *Server) accountCall(c *fiber.Ctx, call func(ctx context.Context, a Accounts, caller *messages.Caller) (AccountInfo, error)) error {
	caller, accounts, err := s.accountService(c)
	if err != nil {
		return err
	}
	acct, err := call(c.UserContext(), accounts, caller)
	if err != nil {
		return err
	}
	return c.JSON(acct)
}
