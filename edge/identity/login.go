package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/edge/locale"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/persistence"
	"github.com/google/uuid"
	"github.com/skip2/go-qrcode"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	// languages names each language in itself, for the pages' switcher.
	"languages": func() map[string]string {
		return map[string]string{"en": "English", "ro": "Română", "ru": "Русский"}
	},
}).ParseFS(templateFS, "templates/*.html"))

// login serves the login pages. Each step reads the authorization request
// from the database and acts only on what it records: a second-factor step
// needs the password step's mark on the same request, so skipping a page
// skips nothing. The request id is the only state the browser carries.
type login struct {
	p        *Provider
	callback func(context.Context, string) string
}

func newLogin(p *Provider) *login {
	return &login{p: p, callback: op.AuthCallbackURL(p.op)}
}

// maxFormBytes bounds a login form.
const maxFormBytes = 8 << 10

// rolesNeedingTOTP must enrol a second factor before they get tokens.
var rolesNeedingTOTP = map[string]bool{"doctor": true, "admin": true}

func (l *login) routes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'")
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		path := strings.TrimSuffix(r.URL.Path, "/")
		switch {
		case path == "/logged-out" && r.Method == http.MethodGet:
			l.render(w, r, http.StatusOK, "message.html", page{Title: "Signed out", Message: "You have signed out."})
		case path == "" && r.Method == http.MethodGet:
			l.showPassword(w, r)
		case path == "" && r.Method == http.MethodPost:
			l.checkPassword(w, r)
		case path == "/new-password" && r.Method == http.MethodPost:
			l.changePassword(w, r)
		case path == "/totp" && r.Method == http.MethodPost:
			l.checkTOTP(w, r)
		case path == "/enrol" && r.Method == http.MethodPost:
			l.enrolTOTP(w, r)
		case path == "/skip-totp" && r.Method == http.MethodPost:
			l.skipTOTP(w, r)
		case path == "/forgot" && r.Method == http.MethodGet:
			l.showForgot(w, r)
		case path == "/forgot" && r.Method == http.MethodPost:
			l.sendReset(w, r)
		case path == "/reset" && r.Method == http.MethodGet:
			l.showReset(w, r)
		case path == "/reset" && r.Method == http.MethodPost:
			l.resetPassword(w, r)
		case path == "/register" && r.Method == http.MethodGet:
			l.showRegister(w, r)
		case path == "/register" && r.Method == http.MethodPost:
			l.register(w, r)
		case path == "/verify" && r.Method == http.MethodGet:
			l.showVerify(w, r)
		case path == "/verify" && r.Method == http.MethodPost:
			l.verify(w, r)
		default:
			l.render(w, r, http.StatusNotFound, "message.html", page{Title: "Not found", Message: "There is no such page."})
		}
	})
}

// page is what every template gets.
type page struct {
	Title, Message, Error string
	ID                    string
	Username              string
	IDNP                  string
	// Token is an emailed link's secret, carried by its form.
	Token string
	// TOTP enrolment
	Secret, SecretURI, Sealed string
	RecoveryCodes             []string
	// Optional: the role may sign in without a second factor.
	Optional bool
	Continue string
	// Refresh is where the page sends the browser at once (meta refresh),
	// with a link for when it does not.
	Refresh string
	Base    string
	// Count fills a Message with {{.Count}}, in the plural its language needs.
	Count int
	// Lang is the page's language, carried by its forms to the next step;
	// T translates the template's own texts into it.
	Lang string
	T    func(string, ...any) string
	// QR is the enrolment secret's URI as a PNG data: URL.
	QR template.URL
}

// render writes a page in the request's language: Title, Message and Error
// are English texts, translated here; the template's own through T.
func (l *login) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	tx := l.texts(r)
	p.Base, p.Lang, p.T = l.p.cfg.loginPath(), tx.Tag.String(), tx.T
	p.Title, p.Error = tx.T(p.Title), tx.T(p.Error)
	if p.Count != 0 {
		p.Message = tx.N(p.Message, p.Count)
	} else {
		p.Message = tx.T(p.Message)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", p.Lang)
	w.Header().Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		l.p.cfg.Logger.Error("login page", "template", name, "error", err)
	}
}

// uiLocalesKey carries the authorization request's ui_locales in the
// request's context, from request() to render().
type uiLocalesKey struct{}

// texts is the request's language: the lang its form carried from the
// page before, else the authorization request's ui_locales, else the
// browser's Accept-Language, else the node's default.
func (l *login) texts(r *http.Request) locale.Texts {
	if t, ok := locale.Parse(r.FormValue("lang")); ok {
		return locale.For(t.String(), "", l.p.cfg.DefaultLocale)
	}
	ui, _ := r.Context().Value(uiLocalesKey{}).(string)
	return locale.For(ui, r.Header.Get("Accept-Language"), l.p.cfg.DefaultLocale)
}

// request loads the authorization request a form or link names, and
// keeps its ui_locales for the page's language.
func (l *login) request(w http.ResponseWriter, r *http.Request) (persistence.AuthRequest, bool) {
	id := r.FormValue("id")
	if uuid.Validate(id) == nil {
		req, err := l.p.cfg.DB.AuthRequestByID(r.Context(), id)
		if err == nil && !req.Done {
			var asked struct {
				UILocales oidc.Locales `json:"ui_locales"`
			}
			if json.Unmarshal(req.Request, &asked) == nil && len(asked.UILocales) > 0 {
				names := make([]string, len(asked.UILocales))
				for i, t := range asked.UILocales {
					names[i] = t.String()
				}
				*r = *r.WithContext(context.WithValue(r.Context(), uiLocalesKey{}, strings.Join(names, " ")))
			}
			return req, true
		}
		if err != nil && !errors.Is(err, persistence.ErrNotFound) {
			l.fail(w, r, err)
			return req, false
		}
	}
	l.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Sign-in expired",
		Message: "This sign-in has expired or is unknown. Go back to the application and sign in again."})
	return persistence.AuthRequest{}, false
}

func (l *login) fail(w http.ResponseWriter, r *http.Request, err error) {
	l.p.cfg.Logger.Error("login failed", "error", err)
	l.render(w, r, http.StatusServiceUnavailable, "message.html", page{Title: "Try again", Message: "Signing in is not possible right now. Try again in a moment."})
}

func (l *login) showPassword(w http.ResponseWriter, r *http.Request) {
	if req, ok := l.request(w, r); ok {
		l.render(w, r, http.StatusOK, "password.html", page{Title: "Sign in", ID: req.ID})
	}
}

func sourceAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// throttle takes one attempt from each key's budget; false (and a 429 page)
// when one is spent.
func (l *login) throttle(w http.ResponseWriter, r *http.Request, keys map[string]ratelimit.Limit) bool {
	for key, limit := range keys {
		d, err := l.p.cfg.Limiter.Allow(r.Context(), key, limit)
		if err != nil {
			l.fail(w, r, err)
			return false
		}
		if !d.Allowed {
			secs := int(d.RetryAfter.Round(time.Second) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			l.render(w, r, http.StatusTooManyRequests, "message.html", page{Title: "Too many attempts",
				Message: "Too many sign-in attempts. Wait {{.Count}} seconds and try again.", Count: max(secs, 1)})
			return false
		}
	}
	return true
}

// audit records a login step. Only a success is the account's own act;
// anything else is an attempt on it, under the keyed hash of the username
// typed (the request's, or the account's when the step came later).
func (l *login) audit(r *http.Request, req persistence.AuthRequest, a persistence.Account, outcome, detail string) error {
	e := LoginEvent{AccountID: a.ID, Role: a.Role, Client: req.ClientID, Outcome: outcome, Detail: detail, SourceAddress: sourceAddress(r)}
	if outcome != "success" {
		typed := r.PostFormValue("username")
		if typed == "" {
			typed = a.Username
		}
		e.Attempt = l.attemptKey(typed)
	}
	return l.p.cfg.Events.Login(r.Context(), e)
}

// attemptKey is what the audit trail keeps of a typed username or IDNP: a
// keyed hash (an IDNP has too few digits for a plain one), the same for
// every attempt with the same text, so attempts can be grouped.
func (l *login) attemptKey(typed string) string {
	key := l.p.cfg.Seal.Derive("audit-attempts")
	h := hmac.New(sha256.New, key[:])
	h.Write([]byte(strings.ToLower(strings.TrimSpace(typed))))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// evenOut holds the answer until at least the configured time has passed
// since start: the branches of a page that must not tell whether something
// exists differ in the database and mail work they do.
func (l *login) evenOut(r *http.Request, start time.Time) {
	t := time.NewTimer(time.Until(start.Add(l.p.cfg.EvenAnswer)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func (l *login) checkPassword(w http.ResponseWriter, r *http.Request) {
	req, ok := l.request(w, r)
	if !ok {
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	if !l.throttle(w, r, map[string]ratelimit.Limit{
		"login:addr:" + sourceAddress(r):             l.p.cfg.PerAddress,
		"login:account:" + strings.ToLower(username): l.p.cfg.PerAccount,
	}) {
		return
	}
	retry := func(msg string) {
		l.render(w, r, http.StatusUnauthorized, "password.html", page{Title: "Sign in", ID: req.ID, Username: username, Error: msg})
	}
	acct, err := l.p.cfg.DB.AccountByUsername(r.Context(), username)
	if errors.Is(err, persistence.ErrNotFound) || (err == nil && acct.PasswordHash == "") {
		VerifyPassword(password, "") // as slow as a real check
		if err := l.audit(r, req, persistence.Account{}, "failed", "unknown account"); err != nil {
			l.fail(w, r, err)
			return
		}
		retry("The username or password is wrong.")
		return
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	now := l.p.cfg.now()
	if !acct.Verified {
		VerifyPassword(password, "")
		if err := l.audit(r, req, acct, "denied", "email not confirmed"); err != nil {
			l.fail(w, r, err)
			return
		}
		l.render(w, r, http.StatusForbidden, "message.html", page{Title: "Confirm your email first",
			Message: "Follow the link we sent to your email address to finish creating your account, then sign in."})
		return
	}
	if acct.Disabled || (acct.LockedUntil != nil && now.Before(*acct.LockedUntil)) {
		VerifyPassword(password, "")
		if err := l.audit(r, req, acct, "denied", "account locked or disabled"); err != nil {
			l.fail(w, r, err)
			return
		}
		l.render(w, r, http.StatusForbidden, "message.html", page{Title: "Account locked",
			Message: "This account is locked after too many failed sign-ins. Try again later or ask an administrator."})
		return
	}
	if !VerifyPassword(password, acct.PasswordHash) {
		l.failedAttempt(w, r, req, acct, "wrong password", func() { retry("The username or password is wrong.") })
		return
	}
	if err := l.p.cfg.DB.PasswordChecked(r.Context(), req.ID, acct.ID); err != nil {
		l.fail(w, r, err)
		return
	}
	l.next(w, r, req.ID, acct)
}

// failedAttempt counts a failure towards the lock, audits it, and either
// says the account is now locked or lets the user retry.
func (l *login) failedAttempt(w http.ResponseWriter, r *http.Request, req persistence.AuthRequest, acct persistence.Account, why string, retry func()) {
	locked, err := l.p.cfg.DB.RecordLoginFailure(r.Context(), acct.ID, l.p.cfg.LockAfter, l.p.cfg.LockFor)
	if err != nil {
		l.fail(w, r, err)
		return
	}
	detail := why
	if locked != nil {
		detail += "; account locked"
	}
	if err := l.audit(r, req, acct, "failed", detail); err != nil {
		l.fail(w, r, err)
		return
	}
	if locked != nil {
		l.render(w, r, http.StatusForbidden, "message.html", page{Title: "Account locked",
			Message: "This account is now locked after too many failed sign-ins. Try again later or ask an administrator."})
		return
	}
	retry()
}

// next shows the step the account owes after its password: a new password
// (first login), its second factor, the second factor's enrolment, or none.
func (l *login) next(w http.ResponseWriter, r *http.Request, id string, acct persistence.Account) {
	switch {
	case acct.MustChangePassword:
		l.render(w, r, http.StatusOK, "new-password.html", page{Title: "Choose a new password", ID: id})
	case acct.TOTPSealed != nil:
		l.render(w, r, http.StatusOK, "totp.html", page{Title: "Enter your code", ID: id})
	case rolesNeedingTOTP[acct.Role], r.PostFormValue("setup_totp") == "on":
		// Required for doctors and admins; anyone else may ask for it.
		l.showEnrol(w, r, id, acct, "")
	default:
		l.complete(w, r, id, acct, []string{"pwd"}, nil)
	}
}

// skipTOTP finishes a login whose owner asked for a second factor and then
// chose not to set it up: allowed only where it is optional.
func (l *login) skipTOTP(w http.ResponseWriter, r *http.Request) {
	req, acct, ok := l.passwordDone(w, r)
	if !ok {
		return
	}
	if acct.TOTPSealed != nil || rolesNeedingTOTP[acct.Role] || acct.MustChangePassword {
		l.next(w, r, req.ID, acct)
		return
	}
	l.complete(w, r, req.ID, acct, []string{"pwd"}, nil)
}

// passwordDone loads the request and its account for a step after the password.
func (l *login) passwordDone(w http.ResponseWriter, r *http.Request) (persistence.AuthRequest, persistence.Account, bool) {
	req, ok := l.request(w, r)
	if !ok {
		return req, persistence.Account{}, false
	}
	if !req.PasswordOK || req.AccountID == "" {
		l.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Sign in first", Message: "Enter your password first."})
		return req, persistence.Account{}, false
	}
	acct, err := l.p.cfg.DB.AccountByID(r.Context(), req.AccountID)
	if errors.Is(err, persistence.ErrNotFound) { // deleted since the password step
		l.render(w, r, http.StatusForbidden, "message.html", page{Title: "Sign-in expired",
			Message: "This sign-in has expired or is unknown. Go back to the application and sign in again."})
		return req, acct, false
	}
	if err != nil {
		l.fail(w, r, err)
		return req, acct, false
	}
	// The account as it is now, at every step: disabled or locked since the
	// password step stops the sign-in here (a lock, a disable and a new
	// password also take the password step back from every sign-in under
	// way, in the same transaction: persistence.endPendingLogins).
	if why := unusable(acct, l.p.cfg.now()); why != "" {
		if err := l.audit(r, req, acct, "denied", why); err != nil {
			l.fail(w, r, err)
			return req, acct, false
		}
		l.render(w, r, http.StatusForbidden, "message.html", page{Title: "Account locked",
			Message: "This account is locked or disabled. Try again later or ask an administrator."})
		return req, acct, false
	}
	return req, acct, true
}

// unusable says why an account may not sign in or get tokens now ("" when
// it may).
func unusable(a persistence.Account, now time.Time) string {
	switch {
	case a.Disabled:
		return "account disabled"
	case a.LockedUntil != nil && now.Before(*a.LockedUntil):
		return "account locked"
	case !a.Verified:
		return "email not confirmed"
	}
	return ""
}

func (l *login) changePassword(w http.ResponseWriter, r *http.Request) {
	req, acct, ok := l.passwordDone(w, r)
	if !ok {
		return
	}
	if !acct.MustChangePassword {
		l.next(w, r, req.ID, acct)
		return
	}
	pw, again := r.PostFormValue("password"), r.PostFormValue("confirm")
	if msg := newPasswordProblem(pw, again); msg != "" {
		l.render(w, r, http.StatusBadRequest, "new-password.html", page{Title: "Choose a new password", ID: req.ID, Error: msg})
		return
	}
	hash, err := HashPassword(pw)
	if err == nil {
		err = l.p.cfg.DB.SetPassword(r.Context(), acct.ID, hash, false, req.ID)
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	acct.MustChangePassword = false
	l.next(w, r, req.ID, acct)
}

func (l *login) checkTOTP(w http.ResponseWriter, r *http.Request) {
	req, acct, ok := l.passwordDone(w, r)
	if !ok {
		return
	}
	if acct.TOTPSealed == nil {
		l.next(w, r, req.ID, acct)
		return
	}
	if !l.throttle(w, r, map[string]ratelimit.Limit{"login:totp:" + acct.ID: l.p.cfg.PerAccount}) {
		return
	}
	secret, err := l.p.cfg.Seal.Open(acct.TOTPSealed, "totp/"+acct.ID)
	if err != nil {
		l.fail(w, r, err)
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	amr := []string{"pwd", "otp"}
	step, valid := TOTPStep(code, string(secret), l.p.cfg.now())
	if valid {
		// A code works once: a replay within its step is a wrong code.
		if valid, err = l.p.cfg.DB.UseTOTPStep(r.Context(), acct.ID, step); err != nil {
			l.fail(w, r, err)
			return
		}
	}
	if !valid && len(code) > 6 {
		// Not a six-digit code: perhaps a recovery code.
		valid, err = l.p.cfg.DB.UseRecoveryCode(r.Context(), acct.ID, hashRecoveryCode(l.p.cfg.Seal.Derive("recovery-codes"), code))
		if err != nil {
			l.fail(w, r, err)
			return
		}
		amr = []string{"pwd", "otp", "recovery"}
	}
	if !valid {
		l.failedAttempt(w, r, req, acct, "wrong second factor", func() {
			l.render(w, r, http.StatusUnauthorized, "totp.html", page{Title: "Enter your code", ID: req.ID, Error: "The code is wrong or has expired."})
		})
		return
	}
	l.complete(w, r, req.ID, acct, amr, nil)
}

// showEnrol offers a new TOTP secret. The secret travels in the form sealed
// to this request, so the browser cannot choose its own.
func (l *login) showEnrol(w http.ResponseWriter, r *http.Request, id string, acct persistence.Account, errMsg string) {
	key, err := NewTOTPKey("caregrid", acct.Username)
	if err != nil {
		l.fail(w, r, err)
		return
	}
	sealed := base64.RawURLEncoding.EncodeToString(l.p.cfg.Seal.Seal([]byte(key.Secret()), "enrol/"+id))
	status := http.StatusOK
	if errMsg != "" {
		status = http.StatusBadRequest
	}
	png, err := qrcode.Encode(key.URL(), qrcode.Medium, 256)
	if err != nil {
		l.fail(w, r, err)
		return
	}
	l.render(w, r, status, "enrol.html", page{Title: "Set up your authenticator app", ID: id, Secret: key.Secret(), SecretURI: key.URL(), Sealed: sealed, Error: errMsg,
		Optional: !rolesNeedingTOTP[acct.Role], QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))})
}

func (l *login) enrolTOTP(w http.ResponseWriter, r *http.Request) {
	req, acct, ok := l.passwordDone(w, r)
	if !ok {
		return
	}
	if acct.TOTPSealed != nil {
		l.next(w, r, req.ID, acct) // enrolled meanwhile: ask for the code
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("sealed"))
	var secret []byte
	if err == nil {
		secret, err = l.p.cfg.Seal.Open(raw, "enrol/"+req.ID)
	}
	if err != nil {
		l.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Start again", Message: "This set-up form is not valid. Go back to the application and sign in again."})
		return
	}
	step, ok := TOTPStep(r.PostFormValue("code"), string(secret), l.p.cfg.now())
	if !ok {
		l.showEnrol(w, r, req.ID, acct, "The code did not match. Scan the new secret below and enter the code it shows.")
		return
	}
	codes, hashes := NewRecoveryCodes(l.p.cfg.Seal.Derive("recovery-codes"))
	if err := l.p.cfg.DB.EnrolTOTP(r.Context(), acct.ID, l.p.cfg.Seal.Seal(secret, "totp/"+acct.ID), hashes, step); err != nil {
		l.fail(w, r, err)
		return
	}
	l.complete(w, r, req.ID, acct, []string{"pwd", "otp"}, codes)
}

// complete opens the session and sends the browser back through the
// provider's callback, which issues the code. With recovery codes to show,
// the page shows them with a link to continue instead of redirecting.
func (l *login) complete(w http.ResponseWriter, r *http.Request, id string, acct persistence.Account, amr []string, recovery []string) {
	now := l.p.cfg.now()
	req := persistence.AuthRequest{ID: id}
	if stored, err := l.p.cfg.DB.AuthRequestByID(r.Context(), id); err == nil {
		req = stored
	}
	sess := persistence.Session{ID: uuid.NewString(), AccountID: acct.ID, ClientID: req.ClientID, AMR: amr, AuthTime: now,
		ExpiresAt: now.Add(l.p.cfg.SessionTTL), SourceAddress: sourceAddress(r), UserAgent: truncate(r.UserAgent(), 256)}
	if err := l.p.cfg.DB.RecordLoginSuccess(r.Context(), acct.ID); err != nil {
		l.fail(w, r, err)
		return
	}
	if err := l.audit(r, req, acct, "success", strings.Join(amr, "+")); err != nil {
		l.fail(w, r, err)
		return
	}
	l.noteDevice(w, r, acct, now)
	if err := l.p.cfg.DB.CompleteLogin(r.Context(), id, sess); err != nil {
		if errors.Is(err, persistence.ErrNotFound) {
			l.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Sign-in expired", Message: "This sign-in has expired. Go back to the application and sign in again."})
			return
		}
		l.fail(w, r, err)
		return
	}
	next := l.callback(r.Context(), id)
	if len(recovery) > 0 {
		l.render(w, r, http.StatusOK, "recovery.html", page{Title: "Keep your recovery codes", RecoveryCodes: recovery, Continue: next})
		return
	}
	// Not a redirect: browsers apply the page's CSP form-action to every
	// redirect that follows a form POST, and the provider's callback
	// redirects on to the app's redirect_uri on another origin, which
	// form-action 'self' forbids (Chromium blocked the last step of every
	// sign-in). A page of our own that moves on by meta refresh (and a link)
	// is a new navigation, not the form's; form-action stays 'self', with no
	// list of every client's redirect targets in it.
	l.render(w, r, http.StatusOK, "continue.html", page{Title: "Signed in", Refresh: next})
}

// deviceCookie names the browser across sign-ins: 256 random bits, kept
// by the database only as a hash.
const deviceCookie = "caregrid_device"

// noteDevice remembers the browser an account signed in from and, when
// the account had signed in from other browsers before, tells its owner
// by mail (a security message: it cannot be declined). The first sign-in
// is not news; a failure here never fails the sign-in.
func (l *login) noteDevice(w http.ResponseWriter, r *http.Request, acct persistence.Account, now time.Time) {
	raw := ""
	if c, err := r.Cookie(deviceCookie); err == nil && len(c.Value) == 43 {
		raw = c.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		raw = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: raw, Path: PathPrefix, MaxAge: 400 * 24 * 3600, HttpOnly: true,
			Secure: strings.HasPrefix(l.p.cfg.Issuer, "https://"), SameSite: http.SameSiteLaxMode})
	}
	hash := sha256.Sum256([]byte(raw))
	isNew, hadOthers, err := l.p.cfg.DB.RememberDevice(r.Context(), acct.ID, hash[:], r.UserAgent(), now)
	if err != nil {
		l.p.cfg.Logger.Warn("remembering a sign-in's device failed", "account", acct.ID, "error", err)
		return
	}
	if !isNew || !hadOthers || acct.Email == "" || l.p.cfg.Mailer == nil {
		return
	}
	tx := l.texts(r)
	body := tx.T("Someone signed in to your caregrid account {{.Username}} from a browser or device it was not used from before ({{.Device}}), on {{.When}} (UTC).\n\nIf it was you, there is nothing to do. If not, change your password at once and tell the hospital.\n",
		"Username", acct.Username, "Device", truncate(r.UserAgent(), 120), "When", now.UTC().Format("02.01.2006 15:04"))
	if err := l.p.cfg.Mailer.Send(r.Context(), acct.Email, tx.T("New sign-in to your caregrid account"), body); err != nil {
		l.p.cfg.Logger.Warn("telling of a new device failed", "account", acct.ID, "error", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// LoginURL is the login page of an authorization request (tests, links).
func LoginURL(issuer, id string) string {
	return strings.TrimSuffix(issuer, "/") + "/login?id=" + url.QueryEscape(id)
}
