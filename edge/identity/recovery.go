package identity

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// Pages reached from the login form: a forgotten password (a single-use,
// expiring link by email) and a patient's self-registration (linked to
// the hospital's record by IDNP, confirmed through the email address the
// hospital has on file, never one the visitor types). Neither page says
// whether an account or a record exists.

var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9._@-]{3,64}$`)

// newLinkToken makes a link's secret and the hash that is stored.
func newLinkToken() (string, []byte) {
	t := randomToken()
	return t, hashToken(t)
}

func (l *login) linkURL(page, token string) string {
	return strings.TrimSuffix(l.p.cfg.Issuer, "/") + "/login/" + page + "?token=" + token
}

func (l *login) showForgot(w http.ResponseWriter, r *http.Request) {
	l.render(w, r, http.StatusOK, "forgot.html", page{Title: "Reset your password", ID: r.FormValue("id")})
}

func (l *login) sendReset(w http.ResponseWriter, r *http.Request) {
	username := strings.TrimSpace(r.PostFormValue("username"))
	if !l.throttle(w, r, map[string]ratelimit.Limit{
		"reset:addr:" + sourceAddress(r):             l.p.cfg.PerAccount,
		"reset:account:" + strings.ToLower(username): l.p.cfg.PerAccount,
	}) {
		return
	}
	start := time.Now()
	sent := page{Title: "Check your email", ID: r.PostFormValue("id"),
		Message: "If the account exists and has an email address, a link to choose a new password is on its way. It works once, within 30 minutes."}
	if l.p.cfg.Mailer == nil {
		l.render(w, r, http.StatusServiceUnavailable, "message.html", page{Title: "Ask for help", Message: "This hospital resets passwords at its help desk: ask an administrator."})
		return
	}
	acct, err := l.p.cfg.DB.AccountByUsername(r.Context(), username)
	if errors.Is(err, persistence.ErrNotFound) || (err == nil && (acct.Email == "" || acct.Disabled || !acct.Verified)) {
		l.evenOut(r, start)
		l.render(w, r, http.StatusOK, "message.html", sent) // the same answer, as late: no account enumeration
		return
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	token, hash := newLinkToken()
	if err := l.p.cfg.DB.CreateAccountToken(r.Context(), hash, acct.ID, persistence.TokenReset, l.p.cfg.now().Add(l.p.cfg.ResetTTL)); err != nil {
		l.fail(w, r, err)
		return
	}
	tx := l.texts(r) // the language the request was made in
	body := tx.T("Someone asked to reset the password of your caregrid account {{.Username}}.\n\nTo choose a new password, open this link within 30 minutes (it works once):\n\n{{.Link}}\n\nIf it was not you, ignore this message: your password stays as it is.\n",
		"Username", acct.Username, "Link", l.linkURL("reset", token))
	if err := l.p.cfg.Mailer.Send(r.Context(), acct.Email, tx.T("Reset your caregrid password"), body); err != nil {
		l.fail(w, r, err)
		return
	}
	if err := l.p.cfg.Events.Login(r.Context(), LoginEvent{Action: messages.AuditAction_AUDIT_ACTION_PASSWORD_RESET_REQUESTED, AccountID: acct.ID, Role: acct.Role,
		Outcome: "success", SourceAddress: sourceAddress(r), Attempt: l.attemptKey(username)}); err != nil {
		l.fail(w, r, err)
		return
	}
	l.evenOut(r, start)
	l.render(w, r, http.StatusOK, "message.html", sent)
}

func (l *login) linkExpired(w http.ResponseWriter, r *http.Request) {
	l.render(w, r, http.StatusBadRequest, "message.html", page{Title: "Link expired",
		Message: "This link has expired or was already used. Ask for a new one from the sign-in page."})
}

func (l *login) showReset(w http.ResponseWriter, r *http.Request) {
	token := r.FormValue("token")
	if _, err := l.p.cfg.DB.AccountTokenLive(r.Context(), hashToken(token), persistence.TokenReset); err != nil {
		if errors.Is(err, persistence.ErrNotFound) {
			l.linkExpired(w, r)
			return
		}
		l.fail(w, r, err)
		return
	}
	l.render(w, r, http.StatusOK, "reset.html", page{Title: "Choose a new password", Token: token})
}

func (l *login) resetPassword(w http.ResponseWriter, r *http.Request) {
	token := r.PostFormValue("token")
	pw, again := r.PostFormValue("password"), r.PostFormValue("confirm")
	if msg := newPasswordProblem(pw, again); msg != "" {
		l.render(w, r, http.StatusBadRequest, "reset.html", page{Title: "Choose a new password", Token: token, Error: msg})
		return
	}
	hash, err := HashPassword(pw)
	if err != nil {
		l.fail(w, r, err)
		return
	}
	// The reset's audit event is written with it.
	event := func(account, role string) LoginEvent {
		return LoginEvent{Action: messages.AuditAction_AUDIT_ACTION_PASSWORD_RESET, AccountID: account, Role: role,
			Outcome: "success", SourceAddress: sourceAddress(r)}
	}
	var done LoginEvent
	account, ended, err := l.p.cfg.DB.ResetPassword(r.Context(), hashToken(token), hash, func(account, role string) *persistence.PendingAudit {
		done = event(account, role)
		pa := l.p.cfg.Events.LoginPending(done)
		return &pa
	})
	if errors.Is(err, persistence.ErrNotFound) {
		l.linkExpired(w, r)
		return
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	for _, sid := range ended {
		l.p.cfg.Events.SessionEnded(r.Context(), sid, account, "password reset")
	}
	l.p.cfg.Events.LoginWritten(r.Context(), done)
	l.render(w, r, http.StatusOK, "message.html", page{Title: "Password changed",
		Message: "Your password is changed and every session of your account has ended. Sign in again from your application."})
}

// newPasswordProblem says what is wrong with a new password and its repetition.
func newPasswordProblem(pw, again string) string {
	// The page's texts, one per rule (the catalogue knows each).
	switch n := utf8.RuneCountInString(pw); {
	case !utf8.ValidString(pw):
		return "The password is not valid text." // text
	case n < MinPasswordLength:
		return "The password must have at least 12 characters." // text
	case n > MaxPasswordLength:
		return "The password must have at most 128 characters." // text
	}
	if pw != again {
		return "The two passwords differ." // text
	}
	return ""
}

func (l *login) showRegister(w http.ResponseWriter, r *http.Request) {
	l.render(w, r, http.StatusOK, "register.html", page{Title: "Create your patient account", ID: r.FormValue("id")})
}

func (l *login) register(w http.ResponseWriter, r *http.Request) {
	form := page{Title: "Create your patient account", ID: r.PostFormValue("id"),
		IDNP: strings.TrimSpace(r.PostFormValue("idnp")), Username: strings.TrimSpace(r.PostFormValue("username"))}
	if !l.throttle(w, r, map[string]ratelimit.Limit{"register:addr:" + sourceAddress(r): l.p.cfg.PerAccount}) {
		return
	}
	pw, again := r.PostFormValue("password"), r.PostFormValue("confirm")
	switch {
	case !patient.ValidIDNP(form.IDNP):
		form.Error = "The IDNP must be the 13 digits of your identity card."
	case !usernamePattern.MatchString(form.Username):
		form.Error = "The username must be 3 to 64 letters, digits, dots, dashes, underscores or @."
	default:
		form.Error = newPasswordProblem(pw, again)
	}
	if form.Error != "" {
		l.render(w, r, http.StatusBadRequest, "register.html", form)
		return
	}
	if l.p.cfg.Mailer == nil {
		l.render(w, r, http.StatusServiceUnavailable, "message.html", page{Title: "Ask at the desk", Message: "This hospital creates patient accounts at its reception desk."})
		return
	}
	sent := page{Title: "Check your email", ID: form.ID,
		Message: "If the hospital has your record with an email address, we sent a link to that address. Follow it within 24 hours to finish; then sign in. If nothing arrives, ask the reception desk to check your email address."}
	// Whether the IDNP is a patient's with an email must not show, in the
	// page or in its timing: the password is hashed either way (the costly
	// part), and the answer waits for the same least time (evenOut).
	start := time.Now()
	hash, err := HashPassword(pw)
	if err != nil {
		l.fail(w, r, err)
		return
	}
	patientID, email, err := l.p.cfg.DB.PatientContact(r.Context(), form.IDNP)
	if errors.Is(err, persistence.ErrNotFound) || (err == nil && email == "") {
		l.evenOut(r, start)
		l.render(w, r, http.StatusOK, "message.html", sent)
		return
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	token, tokenHash := newLinkToken()
	err = l.p.cfg.DB.CreatePendingAccount(r.Context(), persistence.Account{ID: patientID, Username: form.Username, Email: email, Role: "patient", PasswordHash: hash},
		tokenHash, l.p.cfg.now().Add(l.p.cfg.VerifyTTL))
	if errors.Is(err, persistence.ErrExists) {
		if taken, lookupErr := l.p.cfg.DB.AccountByUsername(r.Context(), form.Username); lookupErr == nil && taken.ID != patientID {
			form.Error = "This username is taken: choose another."
			l.render(w, r, http.StatusConflict, "register.html", form)
			return
		}
		// The record has an account already: say nothing more than for a new one.
		_ = l.p.cfg.Events.Login(r.Context(), LoginEvent{Action: messages.AuditAction_AUDIT_ACTION_SELF_REGISTER, AccountID: patientID, PatientID: patientID, Role: "patient",
			Outcome: "denied", Detail: "the record has an account", SourceAddress: sourceAddress(r), Attempt: l.attemptKey(form.IDNP)})
		l.evenOut(r, start)
		l.render(w, r, http.StatusOK, "message.html", sent)
		return
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	tx := l.texts(r)
	body := tx.T("Someone asked to create a caregrid account for your patient record, with the username {{.Username}}.\n\nTo confirm it is you, open this link within 24 hours:\n\n{{.Link}}\n\nIf it was not you, ignore this message: no account is created, and tell the reception desk.\n",
		"Username", form.Username, "Link", l.linkURL("verify", token))
	if err := l.p.cfg.Mailer.Send(r.Context(), email, tx.T("Confirm your caregrid account"), body); err != nil {
		l.fail(w, r, err)
		return
	}
	if err := l.p.cfg.Events.Login(r.Context(), LoginEvent{Action: messages.AuditAction_AUDIT_ACTION_SELF_REGISTER, AccountID: patientID, PatientID: patientID, Role: "patient",
		Outcome: "success", Detail: "email link sent", SourceAddress: sourceAddress(r), Attempt: l.attemptKey(form.IDNP)}); err != nil {
		l.fail(w, r, err)
		return
	}
	l.evenOut(r, start)
	l.render(w, r, http.StatusOK, "message.html", sent)
}

// showVerify asks for a click: a GET must not use the link, or a mail
// scanner that opens links would confirm accounts on its own.
func (l *login) showVerify(w http.ResponseWriter, r *http.Request) {
	token := r.FormValue("token")
	if _, err := l.p.cfg.DB.AccountTokenLive(r.Context(), hashToken(token), persistence.TokenVerify); err != nil {
		if errors.Is(err, persistence.ErrNotFound) {
			l.linkExpired(w, r)
			return
		}
		l.fail(w, r, err)
		return
	}
	l.render(w, r, http.StatusOK, "verify.html", page{Title: "Confirm your account", Token: token})
}

func (l *login) verify(w http.ResponseWriter, r *http.Request) {
	// The verification's audit event is written with it.
	var done LoginEvent
	_, err := l.p.cfg.DB.VerifyAccount(r.Context(), hashToken(r.PostFormValue("token")), func(account string) *persistence.PendingAudit {
		done = LoginEvent{Action: messages.AuditAction_AUDIT_ACTION_VERIFY_EMAIL, AccountID: account, Role: "patient",
			Outcome: "success", SourceAddress: sourceAddress(r)}
		pa := l.p.cfg.Events.LoginPending(done)
		return &pa
	})
	if errors.Is(err, persistence.ErrNotFound) {
		l.linkExpired(w, r)
		return
	}
	if err != nil {
		l.fail(w, r, err)
		return
	}
	l.p.cfg.Events.LoginWritten(r.Context(), done)
	l.render(w, r, http.StatusOK, "message.html", page{Title: "Account ready", Message: "Your email address is confirmed. Sign in from your application."})
}
