package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/notify/notifytest"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
)

// mailbox is a real SMTP server on loopback (notifytest, on go-smtp) with
// a reader of what it receives, in order.
type mailbox struct {
	*notifytest.SMTPServer
	addr string
	got  chan received
}

type received struct {
	from, to, subject, body string
}

func startMailbox(t *testing.T) *mailbox { return mailboxOn(t, "") }

// mailboxOn starts the server on addr ("": a free port).
func mailboxOn(t *testing.T, addr string) *mailbox {
	t.Helper()
	s := notifytest.StartSMTP(t, addr)
	mb := &mailbox{SMTPServer: s, addr: s.Addr, got: make(chan received, 100)}
	go func() {
		seen := 0
		for range s.Received() {
			m := s.Mails()[seen]
			seen++
			mb.got <- received{from: m.From, to: m.To, subject: m.Subject, body: m.Text}
		}
	}()
	return mb
}

// next waits for the next message.
func (mb *mailbox) next(t *testing.T) received {
	t.Helper()
	select {
	case m := <-mb.got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no mail arrived")
		return received{}
	}
}

func (mb *mailbox) none(t *testing.T) {
	t.Helper()
	select {
	case m := <-mb.got:
		t.Fatalf("unexpected mail to %s: %s", m.to, m.subject)
	case <-time.After(300 * time.Millisecond):
	}
}

// mailTo makes a node send its mail (account mail and notifications)
// to addr, through the notifications' queue, retrying soon.
func mailTo(addr string) func(*nodeConfig) {
	return func(c *nodeConfig) {
		c.Notify = &notifyConfig{Email: notify.Email{Addr: addr, From: "caregrid <no-reply@hospital.example>"}, Language: "en",
			PortalURL: "https://portal.hospital.example", Idle: 20 * time.Millisecond,
			Retry: notify.Retry{First: 100 * time.Millisecond, Max: 200 * time.Millisecond}, Trip: 1000}
	}
}

var linkPattern = regexp.MustCompile(`https?://\S+/login/(reset|verify)\?token=\S+`)

func startMailServer(t *testing.T, tune func(*identity.Config)) (*identityServer, *mailbox) {
	mb := startMailbox(t)
	is := startIdentityServer(t, tune, mailTo(mb.addr))
	return is, mb
}

func TestPasswordResetLinkIsSingleUseAndEndsSessions(t *testing.T) {
	is, mb := startMailServer(t, nil)
	ctx := context.Background()
	const deskID = "0b6a7f3e-5b7c-4d1e-9f00-1c2d3e4f5a6b"
	is.account(deskID, "desk-ana", "receptionist", "old-password-123", false)
	if _, err := is.db.Pool.Exec(ctx, `UPDATE accounts SET email = 'ana@hospital.example' WHERE id = $1`, deskID); err != nil {
		t.Fatal(err)
	}
	// A session from before the reset.
	b := newBrowser(t)
	p, verifier, nonce := is.login(b)
	before := is.exchange(b.submit(p, map[string]string{"username": "desk-ana", "password": "old-password-123"}), verifier, nonce)

	b = newBrowser(t)
	p, _, _ = is.login(b)
	forgot := b.get(is.issuer + "/login/forgot?id=" + textOf(p, `name="id" value="([^"]+)"`))
	if done := b.submit(forgot, map[string]string{"username": "nobody-here"}); done.status != 200 || !strings.Contains(done.body, "If the account exists") {
		t.Fatalf("reset for an unknown name: %d %s", done.status, done.body)
	}
	mb.none(t)
	if done := b.submit(forgot, map[string]string{"username": "DESK-ANA"}); done.status != 200 || !strings.Contains(done.body, "If the account exists") {
		t.Fatalf("reset: %d %s", done.status, done.body)
	}
	m := mb.next(t)
	link := linkPattern.FindString(m.body)
	if m.to != "ana@hospital.example" || m.subject != "Reset your caregrid password" || link == "" {
		t.Fatalf("mail = %+v", m)
	}
	reset := b.get(link)
	if short := b.submit(reset, map[string]string{"password": "short", "confirm": "short"}); short.status != http.StatusBadRequest {
		t.Fatalf("a short password: %d", short.status)
	}
	if done := b.submit(reset, map[string]string{"password": "brand-new-password-1", "confirm": "brand-new-password-1"}); done.status != 200 || !strings.Contains(done.body, "Password changed") {
		t.Fatalf("reset: %d %s", done.status, done.body)
	}
	if again := b.get(link); again.status != http.StatusBadRequest || !strings.Contains(again.body, "expired") {
		t.Fatalf("the link used twice: %d %s", again.status, again.body)
	}
	if again := b.submit(reset, map[string]string{"password": "another-password-22", "confirm": "another-password-22"}); again.status != http.StatusBadRequest {
		t.Fatalf("the reset form posted twice: %d", again.status)
	}
	if r := is.do("GET", "/v1/me", before.AccessToken, nil); r.status != 401 {
		t.Fatalf("a session from before the reset: %d, want 401", r.status)
	}
	b = newBrowser(t)
	p, verifier, nonce = is.login(b)
	if old := b.submit(p, map[string]string{"username": "desk-ana", "password": "old-password-123"}); old.status != http.StatusUnauthorized {
		t.Fatalf("the old password: %d", old.status)
	}
	after := is.exchange(b.submit(p, map[string]string{"username": "desk-ana", "password": "brand-new-password-1"}), verifier, nonce)
	if r := is.do("GET", "/v1/me", after.AccessToken, nil); r.status != 200 {
		t.Fatalf("after the reset: %d", r.status)
	}
}

// TestResetLinksExpire: a link asked for when the provider's clock read
// an hour ago has outlived its default 30 minutes (links are checked
// against the database's clock), while one asked for now works.
func TestResetLinksExpire(t *testing.T) {
	clock := &testClock{}
	is, mb := startMailServer(t, func(c *identity.Config) { c.Now = clock.Now })
	is.account("7c1f0e2d-3b4a-4c5d-8e6f-708192a3b4c5", "doc-ion", "receptionist", "old-password-123", false)
	if _, err := is.db.Pool.Exec(context.Background(), `UPDATE accounts SET email = 'ion@hospital.example' WHERE username = 'doc-ion'`); err != nil {
		t.Fatal(err)
	}
	// ask asks for a link while the provider's clock reads shift from now.
	ask := func(shift time.Duration) string {
		b := newBrowser(t)
		p, _, _ := is.login(b)
		forgot := b.get(is.issuer + "/login/forgot?id=" + textOf(p, `name="id" value="([^"]+)"`))
		clock.Shift(shift)
		b.submit(forgot, map[string]string{"username": "doc-ion"})
		clock.Shift(0)
		return linkPattern.FindString(mb.next(t).body)
	}
	old, fresh := ask(-time.Hour), ask(0)
	b := newBrowser(t)
	if r := b.get(old); r.status != http.StatusBadRequest || !strings.Contains(r.body, "expired") {
		t.Fatalf("a link past its 30 minutes: %d %s", r.status, r.body)
	}
	if r := b.get(fresh); r.status != http.StatusOK || !strings.Contains(r.body, `name="password"`) {
		t.Fatalf("a link asked for now: %d %s", r.status, r.body)
	}
}

// TestAccountMailWaitsForTheRelay: account mail is queued with the
// notifications, not sent inside the request. While the relay cannot be
// reached the reset page still says the link is on its way, and the link
// arrives once the relay is up, without the user asking again.
func TestAccountMailWaitsForTheRelay(t *testing.T) {
	down := freeAddr(t) // nothing listens there yet
	is := startIdentityServer(t, nil, mailTo(down))
	is.account("2b7c0d1e-3f4a-4b5c-8d6e-7f8091a2b3c4", "desk-vera", "receptionist", "vera-password-123", false)
	if _, err := is.db.Pool.Exec(context.Background(), `UPDATE accounts SET email = 'vera@hospital.example' WHERE username = 'desk-vera'`); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	p, _, _ := is.login(b)
	forgot := b.get(is.issuer + "/login/forgot?id=" + textOf(p, `name="id" value="([^"]+)"`))
	r := b.submit(forgot, map[string]string{"username": "desk-vera"})
	if r.status != http.StatusOK || !strings.Contains(r.body, "on its way") {
		t.Fatalf("a reset while the relay is down: %d %s", r.status, r.body)
	}
	await.Until(t, "the mail's first try to fail", 10*time.Second, func() bool {
		var attempts int
		_ = is.db.Pool.QueryRow(context.Background(), `SELECT coalesce(max(attempts), 0) FROM notifications WHERE event = 'account-mail' AND last_error <> ''`).Scan(&attempts)
		return attempts >= 1
	})
	mb := mailboxOn(t, down)
	m := mb.next(t)
	if m.to != "vera@hospital.example" || linkPattern.FindString(m.body) == "" {
		t.Fatalf("the reset mail after the relay came up: %+v", m)
	}
}

func TestPatientSelfRegistrationConfirmedByTheEmailOnFile(t *testing.T) {
	is, mb := startMailServer(t, nil)
	s := is.testServer
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("2005042129809")) // email maria@example.md on file
	expect(t, "register the record", r, 201)
	patientID := r.json(t)["id"].(string)
	noEmail := patientBody("1000000000007")
	delete(noEmail, "email")
	expect(t, "a record without email", s.do("POST", "/v1/patients", desk, noEmail), 201)

	b := newBrowser(t)
	p, verifier, nonce := is.login(b)
	reg := b.get(is.issuer + "/login/register?id=" + textOf(p, `name="id" value="([^"]+)"`))
	if bad := b.submit(reg, map[string]string{"idnp": "2005042129808", "username": "maria", "password": "maria-password-1", "confirm": "maria-password-1"}); bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "IDNP") {
		t.Fatalf("a bad IDNP: %d %s", bad.status, bad.body)
	}
	for _, idnp := range []string{"0010000000001", "1000000000007"} { // no such record; a record without email
		if same := b.submit(reg, map[string]string{"idnp": idnp, "username": "someone" + idnp[:3], "password": "maria-password-1", "confirm": "maria-password-1"}); same.status != 200 || !strings.Contains(same.body, "If the hospital has your record") {
			t.Fatalf("IDNP %s: %d %s", idnp, same.status, same.body)
		}
	}
	mb.none(t)
	done := b.submit(reg, map[string]string{"idnp": "2005042129809", "username": "maria", "password": "maria-password-1", "confirm": "maria-password-1"})
	if done.status != 200 || !strings.Contains(done.body, "If the hospital has your record") {
		t.Fatalf("register: %d %s", done.status, done.body)
	}
	m := mb.next(t)
	link := linkPattern.FindString(m.body)
	if m.to != "maria@example.md" || link == "" || !strings.Contains(link, "/login/verify") {
		t.Fatalf("mail = %+v", m)
	}
	// Before the link is followed, the account cannot sign in.
	if early := b.submit(p, map[string]string{"username": "maria", "password": "maria-password-1"}); early.status != http.StatusForbidden || !strings.Contains(early.body, "Confirm your email") {
		t.Fatalf("sign-in before confirming: %d %s", early.status, early.body)
	}
	// Opening the link only shows a button (mail scanners open links).
	confirm := b.get(link)
	if confirm.status != 200 || !strings.Contains(confirm.body, "Confirm my account") {
		t.Fatalf("verify page: %d %s", confirm.status, confirm.body)
	}
	if again := b.get(link); again.status != 200 {
		t.Fatalf("opening the link twice: %d", again.status)
	}
	if ok := b.submit(confirm, nil); ok.status != 200 || !strings.Contains(ok.body, "Account ready") {
		t.Fatalf("confirm: %d %s", ok.status, ok.body)
	}
	if twice := b.submit(confirm, nil); twice.status != http.StatusBadRequest {
		t.Fatalf("confirming twice: %d", twice.status)
	}
	// A second registration for the same record says nothing new and sends nothing.
	b2 := newBrowser(t)
	p2, _, _ := is.login(b2)
	reg2 := b2.get(is.issuer + "/login/register?id=" + textOf(p2, `name="id" value="([^"]+)"`))
	if dup := b2.submit(reg2, map[string]string{"idnp": "2005042129809", "username": "maria2", "password": "maria-password-2", "confirm": "maria-password-2"}); dup.status != 200 {
		t.Fatalf("a second registration: %d", dup.status)
	}
	mb.none(t)

	tok := is.exchange(b.submit(p, map[string]string{"username": "maria", "password": "maria-password-1"}), verifier, nonce)
	me := is.do("GET", "/v1/me", tok.AccessToken, nil)
	if m := me.json(t); me.status != 200 || m["subject"] != patientID || m["role"] != "patient" {
		t.Fatalf("/v1/me = %d %s", me.status, me.body)
	}
	// The patient reads their own record, allergies and all, and sees their account's history.
	expect(t, "own record", s.do("GET", "/v1/patients/"+patientID, tok.AccessToken, nil), 200)
	r = s.do("GET", "/v1/patients/"+patientID+"/access-log", tok.AccessToken, nil)
	expect(t, "own access log", r, 200)
	for _, action := range []string{"self-register", "verify-email", "login"} {
		if !bytes.Contains(r.body, []byte(`"action":"`+action+`"`)) {
			t.Errorf("the access log lacks %q: %s", action, r.body)
		}
	}
}

func TestAdminManagesAccountsOverTheAPI(t *testing.T) {
	is, mb := startMailServer(t, func(c *identity.Config) { c.LockAfter, c.PerAccount = 2, ratelimit.PerMinute(100) })
	s := is.testServer
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	doctorID := workingDoctor(t, s)

	for name, body := range map[string]map[string]any{
		"bad email":               {"username": "ana", "role": "doctor", "email": "not-an-email", "record_id": doctorID},
		"doctor without a record": {"username": "ana", "role": "doctor", "email": "ana@hospital.example"},
		"unknown doctor":          {"username": "ana", "role": "doctor", "email": "ana@hospital.example", "record_id": "99999999-9999-4999-8999-999999999999"},
		"unknown role":            {"username": "ana", "role": "nurse", "email": "ana@hospital.example"},
		"desk with a record":      {"username": "ana", "role": "receptionist", "email": "ana@hospital.example", "record_id": doctorID},
	} {
		if r := s.do("POST", "/v1/accounts", admin, body); r.status != 422 {
			t.Errorf("%s: %d %s, want 422", name, r.status, r.body)
		}
	}
	mb.none(t)
	body := map[string]any{"username": "dr.ana", "role": "doctor", "email": "ana@hospital.example", "record_id": doctorID}
	r := s.do("POST", "/v1/accounts", admin, body, "Idempotency-Key", "acct-1")
	expect(t, "create", r, 201)
	a := r.json(t)
	if a["id"] != doctorID || a["password_set"] != false || a["totp_enrolled"] != false || r.header.Get("Location") != "/v1/accounts/"+doctorID {
		t.Fatalf("created = %s", r.body)
	}
	if replay := s.do("POST", "/v1/accounts", admin, body, "Idempotency-Key", "acct-1"); replay.status != 201 || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v", replay.status, replay.header)
	}
	if reuse := s.do("POST", "/v1/accounts", admin, map[string]any{"username": "other", "role": "admin", "email": "o@hospital.example"}, "Idempotency-Key", "acct-1"); reuse.status != 422 {
		t.Fatalf("key reused: %d", reuse.status)
	}
	if dup := s.do("POST", "/v1/accounts", admin, map[string]any{"username": "DR.ANA", "role": "receptionist", "email": "x@hospital.example"}); dup.status != 409 {
		t.Fatalf("a taken username: %d", dup.status)
	}
	m := mb.next(t)
	mb.none(t) // one mail, not one per replay
	link := linkPattern.FindString(m.body)
	if m.to != "ana@hospital.example" || link == "" {
		t.Fatalf("setup mail = %+v", m)
	}
	b := newBrowser(t)
	if done := b.submit(b.get(link), map[string]string{"password": "ana-chooses-this-1", "confirm": "ana-chooses-this-1"}); done.status != 200 {
		t.Fatalf("choose a password: %d %s", done.status, done.body)
	}

	// The doctor signs in: password, then TOTP enrolment, and gets their own subject.
	login := func(password string) page {
		b := newBrowser(t)
		p, _, _ := is.login(b)
		return b.submit(p, map[string]string{"username": "dr.ana", "password": password})
	}
	p := login("ana-chooses-this-1")
	if !strings.Contains(p.body, `name="sealed"`) {
		t.Fatalf("a new doctor must enrol TOTP: %d %s", p.status, p.body)
	}

	// Two wrong passwords lock the account (LockAfter 2); an admin lifts the lock.
	login("wrong-password-000")
	if locked := login("wrong-password-000"); locked.status != http.StatusForbidden {
		t.Fatalf("second failure: %d", locked.status)
	}
	r = s.do("GET", "/v1/accounts/"+doctorID, admin, nil)
	if r.status != 200 || r.json(t)["locked_until"] == nil {
		t.Fatalf("account after the lock: %d %s", r.status, r.body)
	}
	expect(t, "unlock", s.do("POST", "/v1/accounts/"+doctorID+"/unlock", admin, nil), 200)
	if p := login("ana-chooses-this-1"); !strings.Contains(p.body, `name="sealed"`) {
		t.Fatalf("after unlock: %d", p.status)
	}

	// Disabled: no login; enabled again: login.
	expect(t, "disable", s.do("POST", "/v1/accounts/"+doctorID+"/disable", admin, nil), 200)
	if p := login("ana-chooses-this-1"); p.status != http.StatusForbidden {
		t.Fatalf("a disabled account signs in: %d", p.status)
	}
	expect(t, "enable", s.do("POST", "/v1/accounts/"+doctorID+"/enable", admin, nil), 200)
	if p := login("ana-chooses-this-1"); p.status != 200 {
		t.Fatalf("after enable: %d", p.status)
	}
	expect(t, "send a reset link", s.do("POST", "/v1/accounts/"+doctorID+"/send-reset", admin, nil), 200)
	if m := mb.next(t); m.to != "ana@hospital.example" || linkPattern.FindString(m.body) == "" {
		t.Fatalf("reset mail = %+v", m)
	}
	expect(t, "unknown account", s.do("GET", "/v1/accounts/"+uuid.NewString(), admin, nil), 404)
	expect(t, "a receptionist reads an account", s.do("GET", "/v1/accounts/"+doctorID, s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1"), nil), 403)

	// Every admin action is audited.
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action LIKE 'account-%' AND resource_id = $1`, doctorID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Errorf("audited admin actions on the account: %d, want at least 7", n)
	}
}

// TestASignInFromANewDeviceIsToldToTheOwner: the first sign-in and a
// sign-in from a browser used before send nothing; a sign-in from another
// browser sends the owner a mail naming it (a security message).
func TestASignInFromANewDeviceIsToldToTheOwner(t *testing.T) {
	is, mb := startMailServer(t, nil)
	const deskID = "5e7a0c1d-2b3c-4d5e-8f60-718293a4b5c6"
	is.account(deskID, "desk-lia", "receptionist", "lia-password-123", false)
	if _, err := is.db.Pool.Exec(context.Background(), `UPDATE accounts SET email = 'lia@hospital.example' WHERE id = $1`, deskID); err != nil {
		t.Fatal(err)
	}
	signIn := func(b *browser) {
		t.Helper()
		p, verifier, nonce := is.login(b)
		is.exchange(b.submit(p, map[string]string{"username": "desk-lia", "password": "lia-password-123"}), verifier, nonce)
	}
	queued := func() int { // the request writes the mail: counted at once
		var n int
		if err := is.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE event = 'account-mail'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	laptop := newBrowser(t)
	signIn(laptop)
	signIn(laptop)
	if n := queued(); n != 0 {
		t.Fatalf("%d mails after sign-ins from one browser", n)
	}
	signIn(newBrowser(t))
	if n := queued(); n != 1 {
		t.Fatalf("%d mails after a sign-in from a new browser, want 1", n)
	}
	m := mb.next(t)
	if m.to != "lia@hospital.example" || m.subject != "New sign-in to your caregrid account" || !strings.Contains(m.body, "desk-lia") ||
		!strings.Contains(m.body, "Go-http-client") {
		t.Fatalf("the new device's mail: %+v", m)
	}
	signIn(laptop)
	if n := queued(); n != 1 {
		t.Fatalf("%d mails after the first browser again, want still 1", n)
	}
}
