package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
)

// refused reports whether a login step's answer stopped the sign-in: no
// way on to the app, a 4xx page instead.
func refused(p page) bool {
	return !strings.HasPrefix(p.url, testRedirect) && (p.status == http.StatusForbidden || p.status == http.StatusBadRequest)
}

// TestAccountStateIsCheckedAtEveryStep: an account disabled, locked or
// given a new password while a sign-in is under way cannot finish it (the
// new-password step, the TOTP step, a recovery code), cannot exchange a
// code it already got, and cannot refresh.
func TestAccountStateIsCheckedAtEveryStep(t *testing.T) {
	clock := &testClock{}
	is := startIdentityServer(t, func(c *identity.Config) {
		c.Now = clock.Now
		c.PerAccount = ratelimit.PerMinute(1000)
		c.LockAfter = 10
		c.LockFor = time.Hour
	})
	ctx := context.Background()

	// Disabled between the password and the new-password step.
	const deskID = "5e6f7a8b-0000-4000-8000-00000000de5c"
	is.account(deskID, "desk-vera", "receptionist", "one-time-pass-1", true)
	b := newBrowser(t)
	p, _, _ := is.login(b)
	p = b.submit(p, map[string]string{"username": "desk-vera", "password": "one-time-pass-1"})
	if !strings.Contains(p.body, `name="confirm"`) {
		t.Fatalf("want the new-password page: %d %s", p.status, p.body)
	}
	if _, err := is.db.SetAccountDisabled(ctx, deskID, true); err != nil {
		t.Fatal(err)
	}
	if r := b.submit(p, map[string]string{"password": "vera-own-password-1", "confirm": "vera-own-password-1"}); !refused(r) {
		t.Fatalf("the new-password step of a disabled account: %d %s %s", r.status, r.url, r.body)
	}
	if _, err := is.db.SetAccountDisabled(ctx, deskID, false); err != nil {
		t.Fatal(err)
	}

	// A doctor with a second factor and recovery codes.
	const doctorID = "5e6f7a8b-0000-4000-8000-0000000d0c70"
	is.account(doctorID, "dr-vlad", "doctor", "doctor-pass-1234", false)
	b = newBrowser(t)
	p, verifier, nonce := is.login(b)
	p = b.submit(p, map[string]string{"username": "dr-vlad", "password": "doctor-pass-1234"})
	secret := textOf(p, `<code id="secret">([^<]+)</code>`)
	code, _ := totp.GenerateCode(secret, clock.Now())
	p = b.submit(p, map[string]string{"code": code})
	recovery := recoveryCode.FindAllString(textOf(p, `(?s)<ul id="recovery-codes">(.*?)</ul>`), -1)
	if len(recovery) != 10 {
		t.Fatalf("recovery codes: %v", recovery)
	}
	session := is.exchange(b.get(textOf(p, `<a id="continue" href="([^"]+)"`)), verifier, nonce)

	// Two sign-ins reach the code step; then ten failures elsewhere lock
	// the account. Neither the right code nor a recovery code finishes them.
	clock.Shift(time.Minute)
	atCode := func() (*browser, page) {
		b := newBrowser(t)
		p, _, _ := is.login(b)
		p = b.submit(p, map[string]string{"username": "dr-vlad", "password": "doctor-pass-1234"})
		if !strings.Contains(p.body, `/login/totp"`) {
			t.Fatalf("want the code page: %d %s", p.status, p.body)
		}
		return b, p
	}
	b1, p1 := atCode()
	b2, p2 := atCode()
	for range 10 {
		if _, err := is.db.RecordLoginFailure(ctx, doctorID, 10, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	code, _ = totp.GenerateCode(secret, clock.Now())
	if r := b1.submit(p1, map[string]string{"code": code}); !refused(r) {
		t.Fatalf("the right code after the lock: %d %s %s", r.status, r.url, r.body)
	}
	if r := b2.submit(p2, map[string]string{"code": recovery[0]}); !refused(r) {
		t.Fatalf("a recovery code after the lock: %d %s %s", r.status, r.url, r.body)
	}
	// The session from before the lock cannot refresh while it lasts.
	if _, err := is.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: session.RefreshToken}).Token(); err == nil {
		t.Fatal("a locked account's refresh token was honoured")
	}

	// A code got before the account was disabled cannot be exchanged.
	b = newBrowser(t)
	p, verifier, _ = is.login(b)
	p = b.submit(p, map[string]string{"username": "desk-vera", "password": "one-time-pass-1"})
	p = b.submit(p, map[string]string{"password": "vera-own-password-1", "confirm": "vera-own-password-1"})
	if !strings.HasPrefix(p.url, testRedirect) {
		t.Fatalf("the receptionist's sign-in: %d %s %s", p.status, p.url, p.body)
	}
	if _, err := is.db.SetAccountDisabled(ctx, deskID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := is.oauth.Exchange(ctx, codeOf(p.url), oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a disabled account's code was exchanged for tokens")
	}
}

// codeOf is the authorization code in a redirect to the app.
func codeOf(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return ""
	}
	return u.Query().Get("code")
}

// TestTheAPIRefusesIDTokens: an ID token is signed by the same key for the
// same issuer, but it is not an access token: the API answers 401.
func TestTheAPIRefusesIDTokens(t *testing.T) {
	is := startIdentityServer(t, nil)
	is.account("6a7b8c9d-0000-4000-8000-00000000de5c", "desk-ilie", "receptionist", "desk-password-12", false)
	b := newBrowser(t)
	p, verifier, nonce := is.login(b)
	tok := is.exchange(b.submit(p, map[string]string{"username": "desk-ilie", "password": "desk-password-12"}), verifier, nonce)
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		t.Fatal("no ID token")
	}
	expect(t, "the access token", is.do("GET", "/v1/me", tok.AccessToken, nil), 200)
	expect(t, "the ID token", is.do("GET", "/v1/me", idToken, nil), 401)
}

// TestDiscoveryListsOnlyWhatWorks: the provider's metadata names the grants,
// response types and endpoints its clients can use, and no others.
func TestDiscoveryListsOnlyWhatWorks(t *testing.T) {
	is := startIdentityServer(t, nil)
	r := is.do("GET", "/oidc/.well-known/openid-configuration", "", nil)
	expect(t, "discovery", r, 200)
	var d struct {
		Grants        []string `json:"grant_types_supported"`
		Responses     []string `json:"response_types_supported"`
		Device        string   `json:"device_authorization_endpoint"`
		Challenge     []string `json:"code_challenge_methods_supported"`
		TokenEndpoint string   `json:"token_endpoint"`
	}
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Grants, " ") != "authorization_code refresh_token client_credentials" || strings.Join(d.Responses, " ") != "code" ||
		d.Device != "" || strings.Join(d.Challenge, " ") != "S256" || !strings.HasSuffix(d.TokenEndpoint, "/oidc/oauth/token") {
		t.Fatalf("discovery = %s", r.body)
	}
}

// TestAdminCommandsShareARunningNodesDatabase: `caregrid admin ...` and
// `caregrid audit verify` without a URL, on the data directory a `caregrid
// serve` runs its embedded database from, work on that database (found by
// its postmaster.pid) and leave the node's server running (such a
// command once stopped the node's PostgreSQL, and later was refused).
func TestAdminCommandsShareARunningNodesDatabase(t *testing.T) {
	// Not t.TempDir: its parent is closed to the postgres user, which runs
	// the embedded server when the tests run as root.
	dir, err := os.MkdirTemp("", "caregrid-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	// --database-url= : the embedded database, whatever DATABASE_URL says.
	node := newProcess(t, dir, []string{"serve", "--database-url=", "--http-addr", addr, "--data-dir", dir, "--cluster-port", "0", "--log-level", "warn"})
	node.start()
	// SIGTERM, not the usual kill: the node stops its embedded PostgreSQL
	// (a killed node leaves it running).
	t.Cleanup(func() {
		if node.cmd != nil {
			node.terminate()
		}
	})
	out, err := childCommand("admin", "bootstrap", "--database-url=", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "one-time password") {
		t.Fatalf("admin bootstrap on a served directory: %v\n%s", err, out)
	}
	// The node's own database holds the admin now: a second bootstrap says so.
	out, err = childCommand("admin", "bootstrap", "--database-url=", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "an admin account exists already") {
		t.Fatalf("a second admin bootstrap: %v\n%s", err, out)
	}
	out, err = childCommand("audit", "verify", "--database-url=", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit trail intact") {
		t.Fatalf("audit verify on a served directory: %v\n%s", err, out)
	}
	expect(t, "readyz after the commands", (&testServer{t: t, base: node.base}).do("GET", "/readyz", "", nil), 200)
}

// TestAnAccountForADoctorOrPatientNamesTheirRecord: the CLI, like the API,
// makes a doctor's or patient's account only for a record that exists.
func TestAnAccountForADoctorOrPatientNamesTheirRecord(t *testing.T) {
	db := pgtest.New(t)
	var out bytes.Buffer
	err := createAccount(context.Background(), db, accountFlags{username: "dr-nobody", role: "doctor", id: uuid.NewString()}, &out)
	if err == nil || !strings.Contains(err.Error(), "no doctor record") {
		t.Fatalf("a doctor account without a record: %v", err)
	}
	if _, err := db.AccountByUsername(context.Background(), "dr-nobody"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the account was made anyway: %v", err)
	}
}

// TestSelfRegistrationTakesAsLongForAnyIDNP: whether an IDNP is a patient's
// with an email on file shows neither in the page nor in the time it takes
// (before, 36-85 ms against 1.5 ms). Attempts alternate between a known and
// an unknown IDNP; the medians must be within 20% of the even-answer time
// of each other. Every answer takes at least that time, so the bound holds
// however loaded the machine is, unless the known IDNP's extra work (a
// database write and a mail on loopback) takes longer than it.
// The attempts are audited as attempts (a keyed hash of the IDNP), not as
// the patient's own acts.
func TestSelfRegistrationTakesAsLongForAnyIDNP(t *testing.T) {
	const even = time.Second
	is, mb := startMailServer(t, func(c *identity.Config) {
		c.EvenAnswer = even
		c.PerAccount, c.PerAddress = ratelimit.PerMinute(1000), ratelimit.PerMinute(1000)
	})
	r := is.do("POST", "/v1/patients", is.token(messages.Role_ROLE_RECEPTIONIST, "desk-1"), patientBody("2005042129809")) // maria@example.md
	expect(t, "register the record", r, 201)
	patientID := r.json(t)["id"].(string)
	go func() { // the mailbox keeps at most 10
		for range mb.got {
		}
	}()
	b := newBrowser(t)
	p, _, _ := is.login(b)
	reg := b.get(is.issuer + "/login/register?id=" + textOf(p, `name="id" value="([^"]+)"`))
	var known, unknown []time.Duration
	for i := range 7 {
		for _, idnp := range []string{"2005042129809", "0010000000001"} {
			start := time.Now()
			done := b.submit(reg, map[string]string{"idnp": idnp, "username": fmt.Sprintf("maria-%d", i), "password": "maria-password-1", "confirm": "maria-password-1"})
			took := time.Since(start)
			if done.status != 200 || !strings.Contains(done.body, "If the hospital has your record") {
				t.Fatalf("register %s: %d %s", idnp, done.status, done.body)
			}
			if took < even {
				t.Fatalf("register %s answered in %v, before the even-answer time %v", idnp, took, even)
			}
			if idnp == "2005042129809" {
				known = append(known, took)
			} else {
				unknown = append(unknown, took)
			}
		}
	}
	mk, mu := median(known), median(unknown)
	t.Logf("median answer: known IDNP %v, unknown %v (even-answer time %v)", mk, mu, even)
	if d := mk - mu; d > even/5 || d < -even/5 {
		t.Fatalf("medians differ by %v: known %v, unknown %v", d, mk, mu)
	}
	var own, attempts int
	if err := is.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE subject = $1), count(*) FILTER (WHERE subject LIKE 'attempt:%')
		FROM audit_events WHERE patient_id = $1 AND action = 'self-register'`, patientID).Scan(&own, &attempts); err != nil {
		t.Fatal(err)
	}
	if own != 0 || attempts != 7 {
		t.Fatalf("self-registration events: %d as the patient, %d as attempts; want 0 and 7", own, attempts)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestLoginPagesSpeakTheBrowsersLanguage: without ui_locales, the browser's
// Accept-Language picks the pages' language; the forms carry it on.
func TestLoginPagesSpeakTheBrowsersLanguage(t *testing.T) {
	is := startIdentityServer(t, nil)
	b := newBrowser(t)
	p, _, _ := is.login(b)
	id := textOf(p, `name="id" value="([^"]+)"`)
	req, _ := http.NewRequest("GET", is.issuer+"/login?id="+id, nil)
	req.Header.Set("Accept-Language", "de-DE, ru;q=0.9, en;q=0.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Language") != "ru" || !strings.Contains(string(body), `<html lang="ru">`) ||
		!strings.Contains(string(body), ">Вход</button>") || !strings.Contains(string(body), `name="lang" value="ru"`) {
		t.Fatalf("the login page for a Russian browser: %s\n%s", resp.Header.Get("Content-Language"), body)
	}
	// A wrong password, posted with the page's lang: the answer in Russian.
	r := b.submit(page{url: is.issuer + "/login", body: string(body)}, map[string]string{"username": "nobody", "password": "wrong-password-1"})
	if !strings.Contains(r.body, "Неверное имя пользователя или пароль.") {
		t.Fatalf("the error in Russian: %d %s", r.status, r.body)
	}
	// The API's problem titles too (the type stays the stable name).
	api := is.do("GET", "/v1/me", "", nil, "Accept-Language", "ro-MD, ro;q=0.9")
	if m := api.json(t); api.status != 401 || m["title"] != "Este necesară autentificarea" || m["type"] != "/problems/unauthenticated" ||
		api.header.Get("Content-Language") != "ro" {
		t.Fatalf("a problem for a Romanian client: %d %s %s", api.status, api.header.Get("Content-Language"), api.body)
	}
	// Details and field messages the edge writes, formatted ones included.
	desk := is.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	bad := is.do("GET", "/v1/patients/"+uuid.NewString()+"/access-log?limit=9999", desk, nil, "Accept-Language", "ru")
	if m := bad.json(t); bad.status != 400 || m["detail"] != "limit должен быть целым числом от 1 до 500" ||
		!strings.Contains(string(bad.body), `"message":"должно быть от 1 до 500"`) {
		t.Fatalf("a bad limit for a Russian client: %d %s", bad.status, bad.body)
	}
	// And the grains' (an access refusal, a validation message).
	reg := is.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", reg, 201)
	visits := is.do("GET", "/v1/patients/"+reg.json(t)["id"].(string)+"/visits", desk, nil, "Accept-Language", "ru")
	if m := visits.json(t); visits.status != 403 || m["detail"] != "клинические записи читают только пациент и его лечащие врачи" {
		t.Fatalf("a receptionist's refusal for a Russian client: %d %s", visits.status, visits.body)
	}
	record := patientBody(nextIDNP())
	record["phone"] = "0691"
	invalid := is.do("POST", "/v1/patients", desk, record, "Accept-Language", "ro")
	if invalid.status != 422 || !strings.Contains(string(invalid.body), `"message":"trebuie să fie în forma E.164, de exemplu +37369123456"`) {
		t.Fatalf("a grain's validation message for a Romanian client: %d %s", invalid.status, invalid.body)
	}
}

// TestAnswersCarrySecurityHeaders: every answer, success or problem, is
// kept by no cache and sniffed by no browser, and with an https public URL
// carries HSTS; the OpenID discovery document, public, may be cached.
func TestAnswersCarrySecurityHeaders(t *testing.T) {
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.HTTPS = true })
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	for _, r := range []response{
		s.do("POST", "/v1/patients", desk, patientBody(nextIDNP())),
		s.do("GET", "/v1/me", desk, nil),
		s.do("GET", "/v1/me", "", nil),
		s.do("GET", "/v1/no-such-route", desk, nil),
	} {
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.HasPrefix(r.header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("%d answer's headers: %v", r.status, r.header)
		}
	}
	if got := s.do("GET", "/oidc/.well-known/openid-configuration", "", nil).header.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("discovery Cache-Control = %q", got)
	}
}

// TestCORSOnlyForConfiguredOrigins: the provider's endpoints answer a
// browser's cross-origin request only from an origin the operator listed;
// any other gets no CORS headers (the library's default reflected every
// origin, with credentials).
func TestCORSOnlyForConfiguredOrigins(t *testing.T) {
	is := startIdentityServer(t, func(c *identity.Config) { c.CORSOrigins = []string{"https://app.example.org"} })
	for origin, want := range map[string]string{"https://app.example.org": "https://app.example.org", "https://evil.example": ""} {
		for _, path := range []string{"/oidc/keys", "/oidc/oauth/token"} {
			r := is.do("OPTIONS", path, "", nil, "Origin", origin, "Access-Control-Request-Method", "POST")
			got := r.header.Get("Access-Control-Allow-Origin")
			if got != want || (want == "" && r.header.Get("Access-Control-Allow-Credentials") != "") {
				t.Errorf("preflight of %s from %s: Allow-Origin %q (credentials %q), want %q", path, origin, got,
					r.header.Get("Access-Control-Allow-Credentials"), want)
			}
		}
		r := is.do("GET", "/oidc/keys", "", nil, "Origin", origin)
		if got := r.header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("GET keys from %s: Allow-Origin %q, want %q", origin, got, want)
		}
	}
}
