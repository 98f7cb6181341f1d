package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The embedded OpenID Provider's store (migration 0006). Its rows belong to
// no grain; where two nodes may race on one row (a refresh token used twice,
// a signing key created for the same period), a conditional UPDATE or a
// unique key decides.

// ErrNotFound is returned when a looked-up identity row does not exist.
var ErrNotFound = errors.New("not found")

// ErrRefreshReused is returned when a refresh token that was already
// exchanged is presented again; its session has been revoked.
var ErrRefreshReused = errors.New("refresh token reused")

// ErrSessionEnded is returned for a refresh on a revoked or expired session.
var ErrSessionEnded = errors.New("session ended")

// Account is a login account. ID is the subject of its tokens.
type Account struct {
	ID                 string
	Username           string
	Email              string
	Role               string
	PasswordHash       string
	TOTPSealed         []byte
	MustChangePassword bool
	FailedLogins       int
	LockedUntil        *time.Time
	Disabled           bool
	// Verified is false for a self-registration whose email link is unused.
	Verified  bool
	CreatedAt time.Time
	// DisplayName and ClinicID are a staff account's name and clinic as
	// readers see them (doctors and patients take theirs from the record).
	DisplayName, ClinicID string
}

const accountColumns = `id::text, username, email, role, password_hash, totp_sealed, must_change_password, failed_logins, locked_until, disabled, verified, created_at,
	display_name, coalesce(clinic_id::TEXT, '')`

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.ID, &a.Username, &a.Email, &a.Role, &a.PasswordHash, &a.TOTPSealed,
		&a.MustChangePassword, &a.FailedLogins, &a.LockedUntil, &a.Disabled, &a.Verified, &a.CreatedAt, &a.DisplayName, &a.ClinicID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	return a, classify(err)
}

// CreateAccount inserts an account; ErrExists when its id or username is taken.
func (db *DB) CreateAccount(ctx context.Context, a Account) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, username, email, role, password_hash, must_change_password)
		VALUES ($1, $2, $3, $4, $5, $6)`, a.ID, a.Username, a.Email, a.Role, a.PasswordHash, a.MustChangePassword)
	if isUniqueViolation(err, "accounts_pkey") || isUniqueViolation(err, "accounts_username") {
		return ErrExists
	}
	return classify(err)
}

// AccountByUsername finds an account by its username, ignoring case.
func (db *DB) AccountByUsername(ctx context.Context, username string) (Account, error) {
	return scanAccount(db.Pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE lower(username) = lower($1)`, username))
}

// AccountByID finds an account by id.
func (db *DB) AccountByID(ctx context.Context, id string) (Account, error) {
	return scanAccount(db.Pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id))
}

// CountAccounts counts the accounts with a role ("" for all).
func (db *DB) CountAccounts(ctx context.Context, role string) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE $1 = '' OR role = $1`, role).Scan(&n)
	return n, classify(err)
}

// RecordLoginFailure counts a failed password or code. The failure that
// reaches lockAfter locks the account until now+lockFor and starts the
// count again. It reports the lock's end when the account is now locked.
func (db *DB) RecordLoginFailure(ctx context.Context, id string, lockAfter int, lockFor time.Duration) (*time.Time, error) {
	var until *time.Time
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE accounts SET
				failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
				locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + $3 * interval '1 millisecond' ELSE locked_until END
			WHERE id = $1 RETURNING CASE WHEN locked_until > now() THEN locked_until END`,
			id, lockAfter, lockFor.Milliseconds()).Scan(&until)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || until == nil {
			return err
		}
		return endPendingLogins(ctx, tx, id, "") // a lock stops the sign-ins under way
	})
	return until, classify(err)
}

// endPendingLogins takes the password step back from every sign-in of the
// account still under way (but except's), so that each must start again
// and meet the account as it is now: after a lock, a disable, a new
// password. Every later step requires the password step.
func endPendingLogins(ctx context.Context, tx pgx.Tx, account, except string) error {
	_, err := tx.Exec(ctx, `UPDATE oidc_auth_requests SET password_ok = FALSE
		WHERE account_id = $1 AND NOT done AND password_ok AND id::text <> $2`, account, except)
	return err
}

// RecordLoginSuccess clears the failure count.
func (db *DB) RecordLoginSuccess(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE accounts SET failed_logins = 0 WHERE id = $1 AND failed_logins <> 0`, id)
	return classify(err)
}

// SetPassword replaces an account's password hash; every other sign-in of
// the account under way (all but the request keep, which may be "") must
// start again.
func (db *DB) SetPassword(ctx context.Context, id, hash string, mustChange bool, keep string) error {
	return classify(db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET password_hash = $2, must_change_password = $3 WHERE id = $1`, id, hash, mustChange)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return endPendingLogins(ctx, tx, id, keep)
	}))
}

// EnrolTOTP stores a sealed TOTP secret and replaces the account's recovery
// codes, in one transaction: a second factor is never without its codes.
// step is the time step of the code that confirmed the enrolment (spent).
func (db *DB) EnrolTOTP(ctx context.Context, id string, sealed []byte, recoveryHashes [][]byte, step int64) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET totp_sealed = $2, totp_last_step = $3 WHERE id = $1`, id, sealed, step)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO recovery_codes (account_id, code_hash) SELECT $1, unnest($2::bytea[])`, id, recoveryHashes)
		return err
	})
}

// UseRecoveryCode spends one recovery code; false when it is unknown or spent.
func (db *DB) UseRecoveryCode(ctx context.Context, id string, hash []byte) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE recovery_codes SET used_at = now() WHERE account_id = $1 AND code_hash = $2 AND used_at IS NULL`, id, hash)
	return err == nil && tag.RowsAffected() == 1, classify(err)
}

// Client is a registered OAuth client.
type Client struct {
	ID                     string
	Name                   string
	Kind                   string // public, confidential, service
	SecretHash             []byte
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	AccountID              string // service clients: the account they act as
}

// CreateClient registers a client; ErrExists when the id is taken.
func (db *DB) CreateClient(ctx context.Context, c Client) error {
	var account *string
	if c.AccountID != "" {
		account = &c.AccountID
	}
	_, err := db.Pool.Exec(ctx, `INSERT INTO oidc_clients (id, name, kind, secret_hash, redirect_uris, post_logout_redirect_uris, account_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, c.ID, c.Name, c.Kind, c.SecretHash, nonNilStrings(c.RedirectURIs), nonNilStrings(c.PostLogoutRedirectURIs), account)
	if isUniqueViolation(err, "oidc_clients_pkey") {
		return ErrExists
	}
	return classify(err)
}

// EnsurePublicClient registers a public client, or adds to an existing
// one the redirect URIs it lacks (a cluster's nodes may each be reached at
// their own URL), keeping those it has.
func (db *DB) EnsurePublicClient(ctx context.Context, c Client) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO oidc_clients (id, name, kind, secret_hash, redirect_uris, post_logout_redirect_uris)
		VALUES ($1, $2, 'public', NULL, $3, $4)
		ON CONFLICT (id) DO UPDATE SET
			redirect_uris = ARRAY(SELECT DISTINCT u FROM unnest(oidc_clients.redirect_uris || EXCLUDED.redirect_uris) u ORDER BY u),
			post_logout_redirect_uris = ARRAY(SELECT DISTINCT u FROM unnest(oidc_clients.post_logout_redirect_uris || EXCLUDED.post_logout_redirect_uris) u ORDER BY u)
		WHERE oidc_clients.kind = 'public'`, c.ID, c.Name, nonNilStrings(c.RedirectURIs), nonNilStrings(c.PostLogoutRedirectURIs))
	return classify(err)
}

// ClientByID finds a client.
func (db *DB) ClientByID(ctx context.Context, id string) (Client, error) {
	var (
		c       Client
		account *string
	)
	err := db.Pool.QueryRow(ctx, `SELECT id, name, kind, secret_hash, redirect_uris, post_logout_redirect_uris, account_id::text
		FROM oidc_clients WHERE id = $1`, id).Scan(&c.ID, &c.Name, &c.Kind, &c.SecretHash, &c.RedirectURIs, &c.PostLogoutRedirectURIs, &account)
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, ErrNotFound
	}
	if account != nil {
		c.AccountID = *account
	}
	return c, classify(err)
}

// ClientListing is a client as admins list it: no secret, and the role
// of the account a service client acts as.
type ClientListing struct {
	ID, Name, Kind         string
	RedirectURIs           []string
	AccountID, AccountRole string
}

// Clients lists the provider's clients by id, at most limit.
func (db *DB) Clients(ctx context.Context, limit int) ([]ClientListing, error) {
	rows, err := db.Pool.Query(ctx, `SELECT c.id, c.name, c.kind, c.redirect_uris, COALESCE(c.account_id::text, ''), COALESCE(a.role, '')
		FROM oidc_clients c LEFT JOIN accounts a ON a.id = c.account_id ORDER BY c.id LIMIT $1`, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ClientListing])
	return out, classify(err)
}

// AuthRequest is an authorization request between /authorize and the
// token exchange. Request is the provider's own parsed request, as JSON.
type AuthRequest struct {
	ID         string
	ClientID   string
	Request    json.RawMessage
	AccountID  string
	SessionID  string
	AuthTime   time.Time
	AMR        []string
	PasswordOK bool
	Done       bool
	ExpiresAt  time.Time
}

const authRequestColumns = `id::text, client_id, request, coalesce(account_id::text, ''), coalesce(session_id::text, ''),
	coalesce(auth_time, 'epoch'), amr, password_ok, done, expires_at`

func scanAuthRequest(row pgx.Row) (AuthRequest, error) {
	var a AuthRequest
	err := row.Scan(&a.ID, &a.ClientID, &a.Request, &a.AccountID, &a.SessionID, &a.AuthTime, &a.AMR, &a.PasswordOK, &a.Done, &a.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return AuthRequest{}, ErrNotFound
	}
	return a, classify(err)
}

// CreateAuthRequest stores a new authorization request.
func (db *DB) CreateAuthRequest(ctx context.Context, a AuthRequest) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO oidc_auth_requests (id, client_id, request, expires_at) VALUES ($1, $2, $3, $4)`,
		a.ID, a.ClientID, a.Request, a.ExpiresAt)
	return classify(err)
}

// AuthRequestByID finds an unexpired authorization request.
func (db *DB) AuthRequestByID(ctx context.Context, id string) (AuthRequest, error) {
	return scanAuthRequest(db.Pool.QueryRow(ctx, `SELECT `+authRequestColumns+` FROM oidc_auth_requests WHERE id = $1 AND expires_at > now()`, id))
}

// AuthRequestByCode finds the unexpired, completed request a code was issued for.
func (db *DB) AuthRequestByCode(ctx context.Context, code string) (AuthRequest, error) {
	return scanAuthRequest(db.Pool.QueryRow(ctx, `SELECT `+authRequestColumns+` FROM oidc_auth_requests WHERE code = $1 AND done AND expires_at > now()`, code))
}

// PasswordChecked records that the request's user gave the right password
// and still owes a second factor.
func (db *DB) PasswordChecked(ctx context.Context, id, accountID string) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE oidc_auth_requests SET account_id = $2, password_ok = TRUE WHERE id = $1 AND NOT done AND expires_at > now()`, id, accountID)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return classify(err)
}

// Session is a login session.
type Session struct {
	ID            string
	AccountID     string
	ClientID      string
	AMR           []string
	AuthTime      time.Time
	CreatedAt     time.Time
	LastUsedAt    time.Time
	ExpiresAt     time.Time
	RevokedAt     *time.Time
	SourceAddress string
	UserAgent     string
}

// Live reports whether the session can still be used at now.
func (s Session) Live(now time.Time) bool { return s.RevokedAt == nil && now.Before(s.ExpiresAt) }

// CompleteLogin finishes an authorization request for an account and opens
// its session, in one transaction: a request is done only with a session.
func (db *DB) CompleteLogin(ctx context.Context, requestID string, s Session) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		if err := insertSession(ctx, tx, s); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE oidc_auth_requests SET account_id = $2, session_id = $3, auth_time = $4, amr = $5, done = TRUE
			WHERE id = $1 AND NOT done AND expires_at > now()`, requestID, s.AccountID, s.ID, s.AuthTime, s.AMR)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insertSession(ctx context.Context, q execer, s Session) error {
	_, err := q.Exec(ctx, `INSERT INTO oidc_sessions (id, account_id, client_id, amr, auth_time, expires_at, source_address, user_agent)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, s.ID, s.AccountID, s.ClientID, nonNilStrings(s.AMR), s.AuthTime, s.ExpiresAt, s.SourceAddress, s.UserAgent)
	return err
}

// CreateSession opens a session outside a login (client credentials).
func (db *DB) CreateSession(ctx context.Context, s Session) error {
	return classify(insertSession(ctx, db.Pool, s))
}

// SaveAuthCode gives a completed request its code.
func (db *DB) SaveAuthCode(ctx context.Context, id, code string) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE oidc_auth_requests SET code = $2 WHERE id = $1 AND done`, id, code)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return classify(err)
}

// DeleteAuthRequest removes a request (its code is spent) and any expired ones.
func (db *DB) DeleteAuthRequest(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM oidc_auth_requests WHERE id = $1 OR expires_at < now() - interval '1 hour'`, id)
	return classify(err)
}

const sessionColumns = `id::text, account_id::text, client_id, amr, auth_time, created_at, last_used_at, expires_at, revoked_at, source_address, user_agent`

func scanSession(row pgx.Row) (Session, error) {
	var s Session
	err := row.Scan(&s.ID, &s.AccountID, &s.ClientID, &s.AMR, &s.AuthTime, &s.CreatedAt, &s.LastUsedAt, &s.ExpiresAt, &s.RevokedAt, &s.SourceAddress, &s.UserAgent)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	return s, classify(err)
}

// SessionByID finds a session, live or not.
func (db *DB) SessionByID(ctx context.Context, id string) (Session, error) {
	return scanSession(db.Pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM oidc_sessions WHERE id = $1`, id))
}

// AccountSessions lists an account's live sessions, newest first.
func (db *DB) AccountSessions(ctx context.Context, accountID string, limit int) ([]Session, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+sessionColumns+` FROM oidc_sessions
		WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at DESC LIMIT $2`, accountID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) { return scanSession(r) })
	return out, classify(err)
}

// RevokeSession ends a session (and so every token minted from it). It
// reports whether a live session was revoked; revoking twice is not an error.
func (db *DB) RevokeSession(ctx context.Context, id, reason string) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE oidc_sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL`, id, reason)
	return err == nil && tag.RowsAffected() == 1, classify(err)
}

// RevokeAccountSessions ends an account's sessions with one client (all
// clients when clientID is empty).
func (db *DB) RevokeAccountSessions(ctx context.Context, accountID, clientID, reason string) ([]string, error) {
	rows, err := db.Pool.Query(ctx, `UPDATE oidc_sessions SET revoked_at = now(), revoked_reason = $3
		WHERE account_id = $1 AND ($2 = '' OR client_id = $2) AND revoked_at IS NULL RETURNING id::text`, accountID, clientID, reason)
	if err != nil {
		return nil, classify(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, classify(err)
}

// RefreshToken is a stored refresh token with its session.
type RefreshToken struct {
	Session  Session
	Scopes   []string
	Audience []string
	UsedAt   *time.Time
}

// RefreshTokenByHash finds a refresh token by the SHA-256 of its value.
func (db *DB) RefreshTokenByHash(ctx context.Context, hash []byte) (RefreshToken, error) {
	var r RefreshToken
	s := &r.Session
	err := db.Pool.QueryRow(ctx, `SELECT s.id::text, s.account_id::text, s.client_id, s.amr, s.auth_time, s.created_at, s.last_used_at,
			s.expires_at, s.revoked_at, s.source_address, s.user_agent, t.scopes, t.audience, t.used_at
		FROM oidc_refresh_tokens t JOIN oidc_sessions s ON s.id = t.session_id WHERE t.token_hash = $1`, hash).
		Scan(&s.ID, &s.AccountID, &s.ClientID, &s.AMR, &s.AuthTime, &s.CreatedAt, &s.LastUsedAt, &s.ExpiresAt, &s.RevokedAt,
			&s.SourceAddress, &s.UserAgent, &r.Scopes, &r.Audience, &r.UsedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return RefreshToken{}, ErrNotFound
	}
	return r, classify(err)
}

// IssueRefreshToken stores a new refresh token for a live session. With a
// parent, the parent is spent in the same transaction; a parent already
// spent is a reuse: the session is revoked and ErrRefreshReused returned.
// Invariant: a refresh token is exchanged at most once.
func (db *DB) IssueRefreshToken(ctx context.Context, hash []byte, sessionID string, scopes, audience []string, parent []byte) error {
	reused := false
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		reused = false
		if parent != nil {
			tag, err := tx.Exec(ctx, `UPDATE oidc_refresh_tokens SET used_at = now() WHERE token_hash = $1 AND session_id = $2 AND used_at IS NULL`, parent, sessionID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				reused = true
				_, err := tx.Exec(ctx, `UPDATE oidc_sessions SET revoked_at = now(), revoked_reason = 'refresh token reused' WHERE id = $1 AND revoked_at IS NULL`, sessionID)
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE oidc_sessions SET last_used_at = now() WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()`, sessionID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrSessionEnded
		}
		_, err = tx.Exec(ctx, `INSERT INTO oidc_refresh_tokens (token_hash, session_id, scopes, audience) VALUES ($1, $2, $3, $4)`,
			hash, sessionID, nonNilStrings(scopes), nonNilStrings(audience))
		return err
	})
	if err == nil && reused {
		return ErrRefreshReused
	}
	return classify(err)
}

// SigningKey is a token signing key; PrivateSealed is sealed with the master key.
type SigningKey struct {
	ID            string
	Algorithm     string
	PrivateSealed []byte
	PublicJWK     json.RawMessage
	CreatedAt     time.Time
	SignUntil     time.Time
	PublishUntil  time.Time
}

// AddSigningKey stores k unless a key with its id exists (another node
// made the key for the same period first); either way every node then
// reads the same key.
func (db *DB) AddSigningKey(ctx context.Context, k SigningKey) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO oidc_signing_keys (id, algorithm, private_sealed, public_jwk, created_at, sign_until, publish_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		k.ID, k.Algorithm, k.PrivateSealed, k.PublicJWK, k.CreatedAt, k.SignUntil, k.PublishUntil)
	return classify(err)
}

// PublishedSigningKeys lists the keys still published at now, oldest first,
// and deletes those past their publication.
func (db *DB) PublishedSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	if _, err := db.Pool.Exec(ctx, `DELETE FROM oidc_signing_keys WHERE publish_until < $1`, now); err != nil {
		return nil, classify(err)
	}
	rows, err := db.Pool.Query(ctx, `SELECT id, algorithm, private_sealed, public_jwk, created_at, sign_until, publish_until
		FROM oidc_signing_keys WHERE publish_until >= $1 ORDER BY created_at`, now)
	if err != nil {
		return nil, classify(err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SigningKey, error) {
		var k SigningKey
		err := r.Scan(&k.ID, &k.Algorithm, &k.PrivateSealed, &k.PublicJWK, &k.CreatedAt, &k.SignUntil, &k.PublishUntil)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", classify(err))
	}
	return keys, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CreateServiceClient creates a service account and the client that acts
// as it, in one transaction.
func (db *DB) CreateServiceClient(ctx context.Context, a Account, c Client) error {
	c.AccountID = a.ID
	return classify(db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, username, email, role, password_hash) VALUES ($1, $2, $3, $4, '')`,
			a.ID, a.Username, a.Email, a.Role); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO oidc_clients (id, name, kind, secret_hash, account_id) VALUES ($1, $2, 'service', $3, $4)`,
			c.ID, c.Name, c.SecretHash, c.AccountID)
		return err
	}))
}

// Purposes of account tokens (emailed links).
const (
	TokenReset  = "reset"
	TokenVerify = "verify"
)

// CreateAccountToken stores the hash of an emailed link.
func (db *DB) CreateAccountToken(ctx context.Context, hash []byte, accountID, purpose string, expires time.Time) error {
	// A transaction, for the audit event ctx may carry (WithAudit).
	return classify(db.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at) VALUES ($1, $2, $3, $4)`,
			hash, accountID, purpose, expires)
		return err
	}))
}

// AccountTokenLive reports the account of an unused, unexpired link, or ErrNotFound.
func (db *DB) AccountTokenLive(ctx context.Context, hash []byte, purpose string) (string, error) {
	var id string
	err := db.Pool.QueryRow(ctx, `SELECT account_id::text FROM account_tokens
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()`, hash, purpose).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, classify(err)
}

// useAccountToken spends a link inside tx. Invariant: a link works once;
// the conditional UPDATE decides between two concurrent uses.
func useAccountToken(ctx context.Context, tx pgx.Tx, hash []byte, purpose string) (string, error) {
	var id string
	err := tx.QueryRow(ctx, `UPDATE account_tokens SET used_at = now()
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() RETURNING account_id::text`, hash, purpose).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, err
}

// ResetPassword spends a reset link and sets the account's password; the
// lock and failure count are cleared and every session of the account is
// ended, in one transaction. It returns the account and the ended sessions.
// audited makes the reset's audit event from the account and its role; it
// is written in the same transaction (nil: none).
func (db *DB) ResetPassword(ctx context.Context, hash []byte, passwordHash string, audited func(account, role string) *PendingAudit) (string, []string, error) {
	var (
		account string
		ended   []string
	)
	err := db.writeAudited(ctx, func(tx pgx.Tx) (*PendingAudit, error) {
		var err error
		if account, err = useAccountToken(ctx, tx, hash, TokenReset); err != nil {
			return nil, err
		}
		var role string
		if err := tx.QueryRow(ctx, `SELECT role FROM accounts WHERE id = $1`, account).Scan(&role); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET password_hash = $2, must_change_password = FALSE, failed_logins = 0, locked_until = NULL
			WHERE id = $1`, account, passwordHash); err != nil {
			return nil, err
		}
		if err := endPendingLogins(ctx, tx, account, ""); err != nil {
			return nil, err
		}
		if ended, err = endAccountSessions(ctx, tx, account, "password reset"); err != nil {
			return nil, err
		}
		if audited == nil {
			return nil, nil
		}
		return audited(account, role), nil
	})
	return account, ended, classify(err)
}

// endAccountSessions revokes every live session of an account inside tx
// and returns their ids (the nodes' verifiers are told of them).
func endAccountSessions(ctx context.Context, tx pgx.Tx, account, reason string) ([]string, error) {
	rows, err := tx.Query(ctx, `UPDATE oidc_sessions SET revoked_at = now(), revoked_reason = $2
		WHERE account_id = $1 AND revoked_at IS NULL RETURNING id::text`, account, reason)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// VerifyAccount spends a verification link and lets the account sign in,
// with the audit event audited makes of the account in the same
// transaction (nil: none).
func (db *DB) VerifyAccount(ctx context.Context, hash []byte, audited func(account string) *PendingAudit) (string, error) {
	var account string
	err := db.writeAudited(ctx, func(tx pgx.Tx) (*PendingAudit, error) {
		var err error
		if account, err = useAccountToken(ctx, tx, hash, TokenVerify); err != nil {
			return nil, err
		}
		if _, err = tx.Exec(ctx, `UPDATE accounts SET verified = TRUE WHERE id = $1`, account); err != nil || audited == nil {
			return nil, err
		}
		return audited(account), nil
	})
	return account, classify(err)
}

// CreatePendingAccount creates an unverified account with its verification
// link, in one transaction. A pending account for the same id whose links
// all expired is replaced, so a patient who missed the mail can try again.
func (db *DB) CreatePendingAccount(ctx context.Context, a Account, hash []byte, expires time.Time) error {
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1 AND NOT verified
			AND NOT EXISTS (SELECT 1 FROM account_tokens WHERE account_id = $1 AND used_at IS NULL AND expires_at > now())`, a.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, username, email, role, password_hash, verified) VALUES ($1, $2, $3, $4, $5, FALSE)`,
			a.ID, a.Username, a.Email, a.Role, a.PasswordHash); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at) VALUES ($1, $2, $3, $4)`,
			hash, a.ID, TokenVerify, expires)
		return err
	})
	if isUniqueViolation(err, "accounts_pkey") || isUniqueViolation(err, "accounts_username") {
		return ErrExists
	}
	return classify(err)
}

// PatientContact finds a registered patient's id and email by IDNP, for a
// self-registration: the link goes to the email the hospital has on file.
func (db *DB) PatientContact(ctx context.Context, idnp string) (id, email string, err error) {
	err = db.Pool.QueryRow(ctx, `SELECT id::text, email FROM patients WHERE idnp = $1`, idnp).Scan(&id, &email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", ErrNotFound
	}
	return id, email, classify(err)
}

// CreateAccountWithLink creates an account without a password and the
// link that lets its owner choose one, in one transaction. key and
// fingerprint record an Idempotency-Key (empty: none).
func (db *DB) CreateAccountWithLink(ctx context.Context, a Account, key string, fingerprint, linkHash []byte, expires time.Time) error {
	var k *string
	if key != "" {
		k = &key
	}
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, username, email, role, creation_key, creation_fingerprint, display_name, clinic_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, '')::UUID)`,
			a.ID, a.Username, a.Email, a.Role, k, fingerprint, a.DisplayName, a.ClinicID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO account_tokens (token_hash, account_id, purpose, expires_at) VALUES ($1, $2, $3, $4)`,
			linkHash, a.ID, TokenReset, expires)
		return err
	})
	switch {
	case isForeignKeyViolation(err):
		return ErrNoClinic
	case isUniqueViolation(err, "accounts_creation_key_key"):
		return ErrKeyUsed
	case isUniqueViolation(err, "accounts_pkey") || isUniqueViolation(err, "accounts_username"):
		return ErrExists
	}
	return classify(err)
}

// ErrKeyUsed is returned when an Idempotency-Key already created an account.
var ErrKeyUsed = errors.New("idempotency key used")

// AccountByCreationKey finds the account an Idempotency-Key created, with
// the fingerprint of that request.
func (db *DB) AccountByCreationKey(ctx context.Context, key string) (Account, []byte, error) {
	var fp []byte
	row := db.Pool.QueryRow(ctx, `SELECT `+accountColumns+`, creation_fingerprint FROM accounts WHERE creation_key = $1`, key)
	var a Account
	err := row.Scan(&a.ID, &a.Username, &a.Email, &a.Role, &a.PasswordHash, &a.TOTPSealed,
		&a.MustChangePassword, &a.FailedLogins, &a.LockedUntil, &a.Disabled, &a.Verified, &a.CreatedAt, &a.DisplayName, &a.ClinicID, &fp)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, nil, ErrNotFound
	}
	return a, fp, classify(err)
}

// UnlockAccount clears an account's lock and failure count.
func (db *DB) UnlockAccount(ctx context.Context, id string) error {
	// A transaction, for the audit event ctx may carry (WithAudit).
	return classify(db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET locked_until = NULL, failed_logins = 0 WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	}))
}

// SetAccountDisabled disables or enables an account; disabling ends its
// sessions in the same transaction and returns them.
func (db *DB) SetAccountDisabled(ctx context.Context, id string, disabled bool) ([]string, error) {
	var ended []string
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		ended = nil
		tag, err := tx.Exec(ctx, `UPDATE accounts SET disabled = $2 WHERE id = $1`, id, disabled)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if !disabled {
			return nil
		}
		if err := endPendingLogins(ctx, tx, id, ""); err != nil {
			return err
		}
		ended, err = endAccountSessions(ctx, tx, id, "account disabled")
		return err
	})
	return ended, classify(err)
}

// ResetTOTP removes an account's second factor and recovery codes; its next
// login enrols again (doctors and admins must).
func (db *DB) ResetTOTP(ctx context.Context, id string) error {
	return classify(db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET totp_sealed = NULL WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, id)
		return err
	}))
}

// RecordExists reports whether a doctor ("doctor") or patient ("patient")
// record with id exists: what an account of that role is linked to.
func (db *DB) RecordExists(ctx context.Context, role, id string) (bool, error) {
	table := map[string]string{"doctor": "doctors", "patient": "patients"}[role]
	if table == "" {
		return false, fmt.Errorf("no records for role %q", role)
	}
	var ok bool
	err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1)`, id).Scan(&ok)
	return ok, classify(err)
}

// UseTOTPStep records that a login used the TOTP code of step; false when
// that step or a later one was used already (a replayed code).
func (db *DB) UseTOTPStep(ctx context.Context, id string, step int64) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE accounts SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2`, id, step)
	return err == nil && tag.RowsAffected() == 1, classify(err)
}

// SweepIdentity deletes what no longer serves: sessions ended or expired
// more than keep ago (their refresh tokens go with them), authorization
// requests and emailed links expired an hour ago. Any node may run it;
// deletes of the same rows by two nodes are harmless.
func (db *DB) SweepIdentity(ctx context.Context, keep time.Duration) (int64, error) {
	sessions, err := db.Pool.Exec(ctx, `DELETE FROM oidc_sessions WHERE coalesce(revoked_at, expires_at) < now() - $1 * interval '1 millisecond'`, keep.Milliseconds())
	if err != nil {
		return 0, classify(err)
	}
	requests, err := db.Pool.Exec(ctx, `DELETE FROM oidc_auth_requests WHERE expires_at < now() - interval '1 hour'`)
	if err != nil {
		return sessions.RowsAffected(), classify(err)
	}
	links, err := db.Pool.Exec(ctx, `DELETE FROM account_tokens WHERE expires_at < now() - interval '1 hour'`)
	return sessions.RowsAffected() + requests.RowsAffected() + links.RowsAffected(), classify(err)
}

// SetAccountProfile sets a staff account's display name and clinic (""
// for none); ErrNoClinic when the clinic does not exist.
func (db *DB) SetAccountProfile(ctx context.Context, id, displayName, clinicID string) error {
	// A transaction, for the audit event ctx may carry (WithAudit).
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET display_name = $2, clinic_id = nullif($3, '')::UUID WHERE id = $1`, id, displayName, clinicID)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
	if isForeignKeyViolation(err) {
		return ErrNoClinic
	}
	return classify(err)
}
