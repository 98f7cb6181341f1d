package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/edge/locale"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/google/uuid"
)

// Accounts serves /v1/accounts: admins create staff and patient accounts
// and lift locks, disable, reset second factors and send reset links. An
// account never gets a password from an admin: its owner chooses one
// through an emailed single-use link (valid SetupTTL).
type Accounts struct{ p *Provider }

// Accounts is the edge's view of account management.
func (p *Provider) Accounts() Accounts { return Accounts{p} }

// SetupTTL bounds the link a new account's owner chooses a password with.
const SetupTTL = 72 * time.Hour

// info is an account as admins see it, with the name and clinic readers
// of an access log see (r; the username when r has no name).
func info(a persistence.Account, r persistence.Reader) edge.AccountInfo {
	out := edge.AccountInfo{ID: a.ID, Username: a.Username, DisplayName: r.Name, Role: a.Role, ClinicID: r.ClinicID, ClinicName: r.ClinicName,
		Email: a.Email, PasswordSet: a.PasswordHash != "",
		TOTPEnrolled: a.TOTPSealed != nil, Disabled: a.Disabled, Verified: a.Verified, CreatedAt: a.CreatedAt.UTC()}
	if out.DisplayName == "" {
		out.DisplayName = a.Username
	}
	if a.LockedUntil != nil {
		t := a.LockedUntil.UTC()
		out.LockedUntil = &t
	}
	return out
}

// patientOf is the record an account's events belong to.
func patientOf(a persistence.Account) string {
	if a.Role == "patient" {
		return a.ID
	}
	return ""
}

// accountActions are the actions on an account and how the audit trail
// names them.
var accountActions = map[string]messages.AuditAction{
	"unlock":     messages.AuditAction_AUDIT_ACTION_ACCOUNT_UNLOCK,
	"disable":    messages.AuditAction_AUDIT_ACTION_ACCOUNT_DISABLE,
	"enable":     messages.AuditAction_AUDIT_ACTION_ACCOUNT_ENABLE,
	"reset-totp": messages.AuditAction_AUDIT_ACTION_ACCOUNT_RESET_TOTP,
	"send-reset": messages.AuditAction_AUDIT_ACTION_ACCOUNT_SEND_RESET,
}

// refuse audits a denied admin action and returns the grain error for it.
func (s Accounts) refuse(ctx context.Context, c *messages.Caller, action messages.AuditAction, id string, reason string) error {
	if err := s.p.cfg.Events.Admin(ctx, c, action, id, "", "denied", reason); err != nil {
		return messages.ErrAuditUnavailable("the access could not be audited")
	}
	return messages.ErrPermissionDenied("%s", reason)
}

// withReader reads the name and clinic readers see for a, for info.
func (s Accounts) withReader(ctx context.Context, a persistence.Account) (edge.AccountInfo, error) {
	readers, err := s.p.cfg.DB.Readers(ctx, []string{a.ID})
	if err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	return info(a, readers[a.ID]), nil
}

func fingerprint(in edge.AccountInput) []byte {
	parts := []string{in.Username, in.Role, in.Email, in.RecordID}
	if in.DisplayName != "" || in.ClinicID != "" { // keys used before these fields existed still replay
		parts = append(parts, in.DisplayName, in.ClinicID)
	}
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return h[:]
}

func (s Accounts) Create(ctx context.Context, c *messages.Caller, in edge.AccountInput, key string) (edge.AccountInfo, bool, error) {
	if d := access.ManageAccounts(c); !d.Allowed {
		return edge.AccountInfo{}, false, s.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_CREATE, "", d.Reason)
	}
	in.Username, in.Email, in.RecordID = strings.TrimSpace(in.Username), strings.TrimSpace(in.Email), strings.ToLower(strings.TrimSpace(in.RecordID))
	in.DisplayName, in.ClinicID = strings.TrimSpace(in.DisplayName), strings.ToLower(strings.TrimSpace(in.ClinicID))
	if key != "" {
		prior, fp, err := s.p.cfg.DB.AccountByCreationKey(ctx, key)
		switch {
		case err == nil && bytes.Equal(fp, fingerprint(in)):
			out, err := s.withReader(ctx, prior)
			return out, true, err
		case err == nil:
			return edge.AccountInfo{}, false, messages.ErrIdempotencyKeyReused("the idempotency key was used for a different account")
		case !errors.Is(err, persistence.ErrNotFound):
			return edge.AccountInfo{}, false, messages.ErrStoreUnavailable("account store unavailable")
		}
	}
	fields := map[string]string{}
	role, ok := messages.ParseRole(in.Role)
	if !ok || role == messages.Role_ROLE_SERVICE {
		fields["field:role"] = "must be patient, doctor, receptionist or admin"
	}
	if !usernamePattern.MatchString(in.Username) {
		fields["field:username"] = "must be 3 to 64 letters, digits, dots, dashes, underscores or @"
	}
	if addr, err := mail.ParseAddress(in.Email); err != nil || addr.Address != in.Email {
		fields["field:email"] = "must be an email address (the link to choose a password goes there)"
	}
	linked := role == messages.Role_ROLE_DOCTOR || role == messages.Role_ROLE_PATIENT
	switch {
	case linked && uuid.Validate(in.RecordID) != nil:
		fields["field:record_id"] = "a doctor or patient account needs the id of its record"
	case !linked && in.RecordID != "":
		fields["field:record_id"] = "only doctor and patient accounts link to a record"
	}
	profileFields(fields, in.DisplayName, in.ClinicID, linked)
	if len(fields) > 0 {
		return edge.AccountInfo{}, false, messages.ErrInvalidArgument("the account is not valid").WithMetadata(fields)
	}
	id := uuid.NewString()
	if linked {
		exists, err := s.p.cfg.DB.RecordExists(ctx, role.Name(), in.RecordID)
		if err != nil {
			return edge.AccountInfo{}, false, messages.ErrStoreUnavailable("account store unavailable")
		}
		if !exists {
			return edge.AccountInfo{}, false, messages.ErrInvalidArgument("no %s record %s", role.Name(), in.RecordID).
				WithMetadata(map[string]string{"field:record_id": "names no record of this role"})
		}
		id = in.RecordID
	}
	if s.p.cfg.Mailer == nil {
		return edge.AccountInfo{}, false, messages.ErrStoreUnavailable("this node sends no mail: create the account with 'caregrid admin account create'")
	}
	token, hash := newLinkToken()
	a := persistence.Account{ID: id, Username: in.Username, Email: in.Email, Role: role.Name(), DisplayName: in.DisplayName, ClinicID: in.ClinicID}
	wctx := s.p.cfg.Events.AdminWrite(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_CREATE, id, patientOf(a), role.Name())
	err := s.p.cfg.DB.CreateAccountWithLink(wctx, a, key, fingerprint(in), hash, s.p.cfg.now().Add(SetupTTL))
	switch {
	case errors.Is(err, persistence.ErrKeyUsed):
		return s.Create(ctx, c, in, key) // a concurrent request with the key won: answer as its replay
	case errors.Is(err, persistence.ErrNoClinic):
		return edge.AccountInfo{}, false, messages.ErrInvalidArgument("no clinic %s", in.ClinicID).
			WithMetadata(map[string]string{"field:clinic_id": "names no clinic"})
	case errors.Is(err, persistence.ErrExists):
		return edge.AccountInfo{}, false, messages.ErrAlreadyExists("the username or the record already has an account")
	case err != nil:
		return edge.AccountInfo{}, false, messages.ErrStoreUnavailable("account store unavailable")
	}
	s.p.cfg.Events.AdminWritten(ctx, id, patientOf(a))
	// The owner's language is not known here: the node's default.
	tx := locale.For("", "", s.p.cfg.DefaultLocale)
	body := tx.T("An account was created for you in caregrid, with the username {{.Username}}.\n\nChoose your password with this link within 72 hours (it works once):\n\n{{.Link}}\n",
		"Username", a.Username, "Link", s.linkURL(token))
	if err := s.p.cfg.Mailer.Send(ctx, a.Email, tx.T("Your caregrid account"), body); err != nil {
		// The account exists; an admin can send a new link (send-reset).
		s.p.cfg.Logger.Error("account created, setup mail failed", "account", id, "error", err)
	}
	created, err := s.p.cfg.DB.AccountByID(ctx, id)
	if err != nil {
		return edge.AccountInfo{}, false, messages.ErrStoreUnavailable("account store unavailable")
	}
	out, err := s.withReader(ctx, created)
	return out, false, err
}

func (s Accounts) linkURL(token string) string {
	return strings.TrimSuffix(s.p.cfg.Issuer, "/") + "/login/reset?token=" + token
}

func (s Accounts) Get(ctx context.Context, c *messages.Caller, id string) (edge.AccountInfo, error) {
	if d := access.ManageAccounts(c); !d.Allowed {
		return edge.AccountInfo{}, s.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_READ, id, d.Reason)
	}
	a, err := s.p.cfg.DB.AccountByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return edge.AccountInfo{}, messages.ErrNotFound("no account %s", id)
	}
	if err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	if err := s.p.cfg.Events.Admin(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_READ, id, patientOf(a), "success", ""); err != nil {
		return edge.AccountInfo{}, messages.ErrAuditUnavailable("the access could not be audited")
	}
	return s.withReader(ctx, a)
}

func (s Accounts) Act(ctx context.Context, c *messages.Caller, id, action string) (edge.AccountInfo, error) {
	audited, ok := accountActions[action]
	if !ok {
		return edge.AccountInfo{}, messages.ErrInvalidArgument("unknown action %q", action)
	}
	if d := access.ManageAccounts(c); !d.Allowed {
		return edge.AccountInfo{}, s.refuse(ctx, c, audited, id, d.Reason)
	}
	a, err := s.p.cfg.DB.AccountByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return edge.AccountInfo{}, messages.ErrNotFound("no account %s", id)
	}
	if err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	var ended []string
	wctx := s.p.cfg.Events.AdminWrite(ctx, c, audited, id, patientOf(a), "")
	switch action {
	case "unlock":
		err = s.p.cfg.DB.UnlockAccount(wctx, id)
	case "disable":
		ended, err = s.p.cfg.DB.SetAccountDisabled(wctx, id, true)
	case "enable":
		_, err = s.p.cfg.DB.SetAccountDisabled(wctx, id, false)
	case "reset-totp":
		err = s.p.cfg.DB.ResetTOTP(wctx, id)
	case "send-reset":
		if a.Email == "" || s.p.cfg.Mailer == nil {
			return edge.AccountInfo{}, messages.ErrWrongState("the account has no email address, or this node sends no mail")
		}
		token, hash := newLinkToken()
		if err = s.p.cfg.DB.CreateAccountToken(wctx, hash, id, persistence.TokenReset, s.p.cfg.now().Add(SetupTTL)); err == nil {
			tx := locale.For("", "", s.p.cfg.DefaultLocale)
			err = s.p.cfg.Mailer.Send(ctx, a.Email, tx.T("Choose your caregrid password"),
				tx.T("An administrator sent you a link to choose a new password for {{.Username}}.\n\nIt works once, within 72 hours:\n\n{{.Link}}\n",
					"Username", a.Username, "Link", s.linkURL(token)))
		}
	default:
		return edge.AccountInfo{}, messages.ErrInvalidArgument("unknown action %q", action)
	}
	if err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	for _, sid := range ended {
		s.p.cfg.Events.SessionEnded(ctx, sid, id, "account disabled")
	}
	s.p.cfg.Events.AdminWritten(ctx, id, patientOf(a))
	a, err = s.p.cfg.DB.AccountByID(ctx, id)
	if err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	return s.withReader(ctx, a)
}

// MaxDisplayNameRunes bounds a staff account's display name.
const MaxDisplayNameRunes = 200

// profileFields checks a display name and clinic into fields: only staff
// of no record (receptionists, admins) have them; a linked account's come
// from its record.
func profileFields(fields map[string]string, name, clinic string, linked bool) {
	switch {
	case linked && name != "":
		fields["field:display_name"] = "a doctor's or patient's name is the one on their record"
	case utf8.RuneCountInString(name) > MaxDisplayNameRunes || strings.ContainsFunc(name, unicode.IsControl) || !utf8.ValidString(name):
		fields["field:display_name"] = "must be at most 200 characters, without control characters"
	}
	switch {
	case linked && clinic != "":
		fields["field:clinic_id"] = "a doctor's clinic is the one on their record"
	case clinic != "" && uuid.Validate(clinic) != nil:
		fields["field:clinic_id"] = "must be a clinic id (UUID)"
	}
}

// SetProfile sets a receptionist's or admin's display name and clinic.
func (s Accounts) SetProfile(ctx context.Context, c *messages.Caller, id string, p edge.AccountProfile) (edge.AccountInfo, error) {
	if d := access.ManageAccounts(c); !d.Allowed {
		return edge.AccountInfo{}, s.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_PROFILE, id, d.Reason)
	}
	a, err := s.p.cfg.DB.AccountByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return edge.AccountInfo{}, messages.ErrNotFound("no account %s", id)
	}
	if err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	name, clinic := a.DisplayName, a.ClinicID
	if p.DisplayName != nil {
		name = strings.TrimSpace(*p.DisplayName)
	}
	if p.ClinicID != nil {
		clinic = strings.ToLower(strings.TrimSpace(*p.ClinicID))
	}
	fields := map[string]string{}
	linked := a.Role == "doctor" || a.Role == "patient"
	profileFields(fields, name, clinic, linked)
	if linked && len(fields) == 0 {
		fields["field:display_name"] = "a doctor's or patient's name and clinic are the ones on their record"
	}
	if len(fields) > 0 {
		return edge.AccountInfo{}, messages.ErrInvalidArgument("the profile is not valid").WithMetadata(fields)
	}
	switch err := s.p.cfg.DB.SetAccountProfile(s.p.cfg.Events.AdminWrite(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_PROFILE, id, "", ""), id, name, clinic); {
	case errors.Is(err, persistence.ErrNoClinic):
		return edge.AccountInfo{}, messages.ErrInvalidArgument("no clinic %s", clinic).
			WithMetadata(map[string]string{"field:clinic_id": "names no clinic"})
	case errors.Is(err, persistence.ErrNotFound):
		return edge.AccountInfo{}, messages.ErrNotFound("no account %s", id)
	case err != nil:
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	s.p.cfg.Events.AdminWritten(ctx, id, "")
	if a, err = s.p.cfg.DB.AccountByID(ctx, id); err != nil {
		return edge.AccountInfo{}, messages.ErrStoreUnavailable("account store unavailable")
	}
	return s.withReader(ctx, a)
}

// List returns a page of the account directory. The listing itself is
// audited (who looked at the accounts), not each account.
func (s Accounts) List(ctx context.Context, c *messages.Caller, q edge.AccountQuery) ([]edge.AccountInfo, bool, error) {
	if d := access.ManageAccounts(c); !d.Allowed {
		return nil, false, s.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_LIST, "", d.Reason)
	}
	rows, err := s.p.cfg.DB.ListAccounts(ctx, q.Role, q.Q, q.Status, q.After, q.Limit+1)
	if err != nil {
		return nil, false, messages.ErrStoreUnavailable("account store unavailable")
	}
	more := len(rows) > q.Limit
	if more {
		rows = rows[:q.Limit]
	}
	if err := s.p.cfg.Events.Admin(ctx, c, messages.AuditAction_AUDIT_ACTION_ACCOUNT_LIST, "", "", "success", fmt.Sprintf("%d accounts", len(rows))); err != nil {
		return nil, false, messages.ErrAuditUnavailable("the access could not be audited")
	}
	out := make([]edge.AccountInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, info(r.Account, r.Reader))
	}
	return out, more, nil
}

// maxClientNameRunes bounds a client's name.
const maxClientNameRunes = 200

// Clients lists the provider's clients (admins).
func (s Accounts) Clients(ctx context.Context, c *messages.Caller) ([]edge.ClientInfo, error) {
	if d := access.ManageAccounts(c); !d.Allowed {
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	cs, err := s.p.cfg.DB.Clients(ctx, 1000)
	if err != nil {
		return nil, messages.ErrStoreUnavailable("account store unavailable")
	}
	out := make([]edge.ClientInfo, 0, len(cs))
	for _, cl := range cs {
		out = append(out, edge.ClientInfo{ID: cl.ID, Name: cl.Name, Kind: cl.Kind, RedirectURIs: cl.RedirectURIs, AccountID: cl.AccountID, Role: cl.AccountRole})
	}
	return out, nil
}

// CreateServiceClient registers a service client and the account it acts
// as (admins; audited in the same transaction), with a fresh secret of
// which only a hash is kept.
func (s Accounts) CreateServiceClient(ctx context.Context, c *messages.Caller, in edge.ClientInput) (edge.ClientInfo, string, error) {
	if d := access.ManageAccounts(c); !d.Allowed {
		return edge.ClientInfo{}, "", s.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CLIENT_CREATE, "", d.Reason)
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Role == "" {
		in.Role = messages.Role_ROLE_SERVICE.Name()
	}
	fields := map[string]string{}
	if in.Name == "" || utf8.RuneCountInString(in.Name) > maxClientNameRunes || strings.ContainsFunc(in.Name, unicode.IsControl) {
		fields["field:name"] = "must be 1 to 200 characters, without control characters"
	}
	role, ok := messages.ParseRole(in.Role)
	if !ok || role == messages.Role_ROLE_PATIENT || role == messages.Role_ROLE_ADMIN {
		fields["field:role"] = "must be service, doctor or receptionist"
	}
	if len(fields) > 0 {
		return edge.ClientInfo{}, "", messages.ErrInvalidArgument("the client is not valid").WithMetadata(fields)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	cl := persistence.Client{ID: uuid.NewString(), Name: in.Name, Kind: "service", SecretHash: hashToken(secret)}
	acct := persistence.Account{ID: uuid.NewString(), Username: "service:" + cl.ID, Role: role.Name()}
	wctx := s.p.cfg.Events.AdminWrite(ctx, c, messages.AuditAction_AUDIT_ACTION_CLIENT_CREATE, acct.ID, "", in.Name)
	if err := s.p.cfg.DB.CreateServiceClient(wctx, acct, cl); err != nil {
		return edge.ClientInfo{}, "", messages.ErrStoreUnavailable("account store unavailable")
	}
	s.p.cfg.Events.AdminWritten(ctx, acct.ID, "")
	return edge.ClientInfo{ID: cl.ID, Name: cl.Name, Kind: cl.Kind, AccountID: acct.ID, Role: acct.Role}, secret, nil
}
