// Package identity is caregrid's embedded OpenID Provider (zitadel/oidc's
// op package): discovery, JWKS, authorization code with PKCE, refresh
// tokens with rotation and reuse detection, client credentials, revocation
// and end session, with server-rendered login pages (password, then TOTP)
// and the verifier the edge checks access tokens with. Its state lives in
// the database (persistence/identity.go), so any node can serve any step.
package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caregrid/caregrid/edge/locale"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// PathPrefix is where the provider is mounted on the edge; the issuer is
// the public base URL plus this path.
const PathPrefix = "/oidc"

// Config configures the provider. Zero durations take the defaults.
type Config struct {
	DB   *persistence.DB
	Seal *seal.Key
	// Issuer is the public URL of the provider, <public base URL>/oidc.
	Issuer string
	// Audience is the API audience every access token carries.
	Audience string
	// AccessTokenTTL bounds access and ID tokens (default 15m).
	AccessTokenTTL time.Duration
	// SessionTTL bounds a login session and its refresh tokens (default 12h).
	SessionTTL time.Duration
	// LoginTimeout bounds the time from /authorize to finishing the login (default 10m).
	LoginTimeout time.Duration
	// KeyRotation is how long one signing key signs (default 24h).
	KeyRotation time.Duration
	// Limiter throttles login attempts (default: per process).
	Limiter ratelimit.Limiter
	// Login attempts allowed per account and per source address.
	PerAccount, PerAddress ratelimit.Limit
	// LockAfter failed logins in a row lock the account for LockFor.
	LockAfter int
	LockFor   time.Duration
	// Events hears logins and ended sessions (the node audits them).
	Events Events
	// Mailer sends reset and verification links (nil: those pages say to
	// ask the hospital instead).
	Mailer Mailer
	// ResetTTL bounds a password-reset link (default 30m); VerifyTTL a
	// self-registration's email link (default 24h).
	ResetTTL, VerifyTTL time.Duration
	// EvenAnswer is the least time the pages that could tell whether an
	// account or a record exists (forgotten password, self-registration)
	// take to answer, whichever way it goes (default 500ms): both ways do
	// the same hashing, and this covers the database and mail work that
	// only one way does.
	EvenAnswer time.Duration
	// DefaultLocale is the pages' and mails' language when neither the
	// application (ui_locales) nor the browser (Accept-Language) names a
	// supported one (default English).
	DefaultLocale language.Tag
	Logger        *slog.Logger
	Now           func() time.Time

	// Insecure is set for an http issuer on loopback (development, tests).
	Insecure bool
	// CORSOrigins are the web origins (scheme://host[:port]) whose pages
	// may call the provider's endpoints from a browser (a single-page
	// application exchanging its code at the token endpoint). Any other
	// origin gets no CORS headers at all. Empty: none.
	CORSOrigins []string
}

// Events is told what the audit trail must record. Implementations must
// not block for long: they run inside the login request.
type Events interface {
	// Login is a login attempt's outcome: "success", "failed" or "denied".
	Login(ctx context.Context, e LoginEvent) error
	// SessionEnded is a session revoked (logout, revocation, reuse).
	SessionEnded(ctx context.Context, sessionID, accountID, reason string)
	// Admin is an admin's action on an account (or its refusal); an error
	// fails the action.
	Admin(ctx context.Context, c *messages.Caller, action messages.AuditAction, accountID, patientID, outcome, detail string) error
	// AdminWrite returns ctx carrying the audit event of an admin's change
	// of an account, written in the change's own transaction; AdminWritten,
	// once it has committed, asks for it to be chained.
	AdminWrite(ctx context.Context, c *messages.Caller, action messages.AuditAction, accountID, patientID, detail string) context.Context
	AdminWritten(ctx context.Context, accountID, patientID string)
	// LoginPending is a login page's change's audit event as the change's
	// transaction writes it (Event nil: none); LoginWritten, once it has
	// committed, asks for it to be chained.
	LoginPending(e LoginEvent) persistence.PendingAudit
	LoginWritten(ctx context.Context, e LoginEvent)
}

// LoginEvent is one login-page event: a login attempt (Action login, the
// default), a password reset, a self-registration or an email check.
// AccountID is empty for an unknown name.
type LoginEvent struct {
	Action                                                             messages.AuditAction
	AccountID, PatientID, Role, Client, Outcome, Detail, SourceAddress string
	// Attempt, when set, is the keyed hash of what the visitor typed (a
	// username or an IDNP): the event is an attempt on AccountID by someone
	// not proven to be its owner, and is recorded under the attempt, not
	// as the owner's own act.
	Attempt string
}

type noEvents struct{}

func (noEvents) Login(context.Context, LoginEvent) error              { return nil }
func (noEvents) SessionEnded(context.Context, string, string, string) {}
func (noEvents) Admin(context.Context, *messages.Caller, messages.AuditAction, string, string, string, string) error {
	return nil
}
func (noEvents) AdminWrite(ctx context.Context, _ *messages.Caller, _ messages.AuditAction, _, _, _ string) context.Context {
	return ctx
}
func (noEvents) AdminWritten(context.Context, string, string)     {}
func (noEvents) LoginPending(LoginEvent) persistence.PendingAudit { return persistence.PendingAudit{} }
func (noEvents) LoginWritten(context.Context, LoginEvent)         {}

func (c *Config) now() time.Time { return c.Now() }

func (c *Config) loginPath() string {
	u, _ := url.Parse(c.Issuer)
	return strings.TrimSuffix(u.Path, "/") + "/login"
}

func (c *Config) defaults() error {
	if c.DB == nil || c.Seal == nil {
		return errors.New("identity: a database and a master key are required")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasSuffix(u.Path, PathPrefix) {
		return fmt.Errorf("identity: issuer %q must be an absolute URL ending in %s", c.Issuer, PathPrefix)
	}
	if u.Scheme == "http" {
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("identity: issuer %q must use https (http is allowed on loopback only)", c.Issuer)
		}
		c.Insecure = true
	}
	if c.Audience == "" {
		c.Audience = "caregrid"
	}
	setDefault(&c.AccessTokenTTL, 15*time.Minute)
	setDefault(&c.EvenAnswer, 500*time.Millisecond)
	if c.DefaultLocale == language.Und {
		c.DefaultLocale = language.English
	}
	setDefault(&c.SessionTTL, 12*time.Hour)
	setDefault(&c.LoginTimeout, 10*time.Minute)
	setDefault(&c.KeyRotation, 24*time.Hour)
	setDefault(&c.LockFor, 15*time.Minute)
	setDefault(&c.ResetTTL, 30*time.Minute)
	setDefault(&c.VerifyTTL, 24*time.Hour)
	if c.LockAfter <= 0 {
		c.LockAfter = 10
	}
	if c.PerAccount.Rate == 0 {
		c.PerAccount = ratelimit.PerMinute(5)
	}
	if c.PerAddress.Rate == 0 {
		c.PerAddress = ratelimit.PerMinute(30)
	}
	if c.Limiter == nil {
		c.Limiter = ratelimit.NewLocal(100_000)
	}
	if c.Events == nil {
		c.Events = noEvents{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Provider is the OpenID Provider with its login pages.
type Provider struct {
	cfg      Config
	op       *op.Provider
	verifier *Verifier
	storage  *storage
	keys     *Keys
	handler  http.Handler
}

// New builds the provider; its Handler serves everything under the issuer's path.
func New(cfg Config) (*Provider, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	keys := newKeys(cfg.DB, cfg.Seal, cfg.KeyRotation, cfg.SessionTTL+cfg.AccessTokenTTL, cfg.now)
	p := &Provider{cfg: cfg, keys: keys}
	p.verifier = p.newVerifier()
	p.cfg.Events = forgetting{Events: cfg.Events, v: p.verifier}
	p.storage = &storage{db: cfg.DB, keys: keys, cfg: &p.cfg}
	// CORS for the configured origins only: the library's default reflects
	// every origin, with credentials.
	opts := []op.Option{op.WithCORSOptions(&cors.Options{
		AllowedOrigins:   cfg.CORSOrigins,
		AllowCredentials: true,
		AllowedHeaders:   []string{"Accept", "Accept-Language", "Authorization", "Content-Type"},
		AllowedMethods:   []string{http.MethodGet, http.MethodPost},
		ExposedHeaders:   []string{"Location"},
	})}
	if cfg.Insecure {
		opts = append(opts, op.WithAllowInsecure())
	}
	provider, err := op.NewProvider(&op.Config{
		// Codes are the request id sealed with a key derived from the master key.
		CryptoKey:                cfg.Seal.Derive("oidc-code"),
		DefaultLogoutRedirectURI: cfg.loginPath() + "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       locale.Supported,
		SupportedScopes:          []string{"openid", "profile", "email", "offline_access"},
		SupportedClaims:          []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "acr", "amr", "azp", "sid", ClaimRole, "preferred_username", "email"},
	}, p.storage, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, err
	}
	p.op = provider
	login := newLogin(p)
	mux := http.NewServeMux()
	intercept := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	loginPages := intercept.Handler(http.StripPrefix("/login", login.routes()))
	mux.Handle("/login", loginPages)
	mux.Handle("/login/", loginPages)
	mux.Handle(oidc.DiscoveryEndpoint, intercept.Handler(http.HandlerFunc(p.discovery)))
	mux.Handle("/", provider)
	p.handler = http.StripPrefix(strings.TrimSuffix(mustPath(cfg.Issuer), "/"), mux)
	return p, nil
}

func mustPath(issuer string) string {
	u, _ := url.Parse(issuer)
	return u.Path
}

// SessionRetention is how long an ended session stays listed for its
// owner and in the store before the sweep removes it.
const SessionRetention = 30 * 24 * time.Hour

// Sweep removes ended sessions, stale authorization requests and emailed
// links every interval until ctx ends. Every node runs it.
func (p *Provider) Sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := p.cfg.DB.SweepIdentity(ctx, SessionRetention); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("identity sweep", "error", err)
		} else if n > 0 {
			p.cfg.Logger.Info("identity sweep", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// discovery is the provider's metadata with only what works here: the
// library lists every grant and response type it knows (implicit, device
// code, JWT bearer, id_token responses), which caregrid's clients cannot
// use (public clients: code with PKCE and refresh; services: client
// credentials).
func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	d := op.CreateDiscoveryConfig(r.Context(), p.op, p.storage)
	d.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials}
	d.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	d.ResponseModesSupported = []string{"query"}
	d.DeviceAuthorizationEndpoint, d.CheckSessionIframe = "", ""
	d.RequestParameterSupported, d.RequestURIParameterSupported = false, false
	d.RequestObjectSigningAlgValuesSupported = nil
	d.TokenEndpointAuthSigningAlgValuesSupported = nil
	d.IntrospectionEndpointAuthSigningAlgValuesSupported = nil
	d.RevocationEndpointAuthSigningAlgValuesSupported = nil
	d.TokenEndpointAuthMethodsSupported = []oidc.AuthMethod{oidc.AuthMethodNone, oidc.AuthMethodBasic, oidc.AuthMethodPost}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(d)
}

// Handler serves the provider and its login pages at the issuer's path.
func (p *Provider) Handler() http.Handler { return p.handler }

// Verifier checks the provider's access tokens for the edge.
func (p *Provider) Verifier() *Verifier { return p.verifier }

// Keys is the provider's signing keys (the verifier reads them).
func (p *Provider) Keys() *Keys { return p.keys }

// Config is the provider's configuration with defaults applied.
func (p *Provider) Config() Config { return p.cfg }
