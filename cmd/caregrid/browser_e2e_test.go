package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/internal/browsertest"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
)

// browserApp is an application on its own origin (another port) that the
// browser returns to: what makes a cross-origin redirect at the end of a
// sign-in, which is where Chromium applied the login page's form-action.
type browserApp struct {
	t      *testing.T
	is     *identityServer
	server *httptest.Server
	oauth  oauth2.Config
}

const browserClient = "browser-app"

func startBrowserApp(t *testing.T, is *identityServer) *browserApp {
	t.Helper()
	app := &browserApp{t: t, is: is}
	app.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>app</title><p id="app">` + r.URL.Path + `</p>`))
	}))
	t.Cleanup(app.server.Close)
	if err := is.db.CreateClient(context.Background(), persistence.Client{ID: browserClient, Name: "browser app", Kind: "public",
		RedirectURIs: []string{app.server.URL + "/callback"}, PostLogoutRedirectURIs: []string{app.server.URL + "/bye"}}); err != nil {
		t.Fatal(err)
	}
	app.oauth = oauth2.Config{ClientID: browserClient, Endpoint: is.provider.Endpoint(), RedirectURL: app.server.URL + "/callback",
		Scopes: []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}}
	return app
}

// signIn is one sign-in as a browser makes it: the app's authorization
// URL (PKCE), the login pages through steps, and the app's callback with a
// code that the app exchanges. steps drive the pages.
type signIn struct {
	verifier, nonce string
}

func (app *browserApp) start(b *browsertest.Browser, opts ...oauth2.AuthCodeOption) signIn {
	app.t.Helper()
	verifier := oauth2.GenerateVerifier()
	s := signIn{verifier: verifier, nonce: "n-" + verifier[:12]}
	b.Go(app.oauth.AuthCodeURL("st-"+verifier[12:20], append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(s.nonce)}, opts...)...))
	if !b.Has(`input[name=password]`) {
		app.t.Fatalf("the login page has no password field (at %s)", b.Location())
	}
	return s
}

// finish expects the browser at the app's callback and exchanges its code.
func (app *browserApp) finish(b *browsertest.Browser, s signIn) *oauth2.Token {
	app.t.Helper()
	loc := b.Location()
	if !strings.HasPrefix(loc, app.server.URL+"/callback?") {
		b.Capture("not at the callback")
		app.t.Fatalf("the sign-in did not return to the app: at %s\n%s", loc, strings.Join(b.Console(), "\n"))
	}
	u, _ := url.Parse(loc)
	ctx := context.Background()
	tok, err := app.oauth.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(s.verifier))
	if err != nil {
		app.t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := app.is.provider.Verifier(&oidc.Config{ClientID: browserClient}).Verify(ctx, raw)
	if err != nil || idt.Nonce != s.nonce {
		app.t.Fatalf("ID token: %v (nonce %q)", err, idt.Nonce)
	}
	b.NoCSPViolations()
	return tok
}

var recoveryCode = regexp.MustCompile(`[A-Za-z0-9-]{8,}`)

// TestBrowserSignInFlows drives Debian's Chromium through the real login
// pages, each flow ending at the app's callback (another origin) with a
// code the app exchanges: a receptionist's first sign-in with a one-time
// password, her returning password-only sign-in, a doctor's TOTP enrolment
// (recovery codes shown, then continue), his returning TOTP sign-in and one
// with a recovery code, a forgotten password reset by the emailed link,
// a patient's self-registration confirmed by email, and logout. Any CSP
// violation the browser reports fails the test.
func TestBrowserSignInFlows(t *testing.T) {
	clock := &testClock{}
	is, mb := startMailServer(t, func(c *identity.Config) { c.Now = clock.Now })
	app := startBrowserApp(t, is)
	ctx := context.Background()

	// A receptionist's first sign-in: the one-time password, then her own.
	const deskID = "3a4b5c6d-0000-4000-8000-00000000de5c"
	is.account(deskID, "desk-ana", "receptionist", "one-time-pass-1", true)
	if _, err := is.db.Pool.Exec(ctx, `UPDATE accounts SET email = 'ana@hospital.example' WHERE id = $1`, deskID); err != nil {
		t.Fatal(err)
	}
	b := browsertest.New(t)
	s := app.start(b)
	b.Submit(map[string]string{"username": "desk-ana", "password": "one-time-pass-1"})
	if !b.Has(`input[name=confirm]`) {
		t.Fatalf("no new-password page after a one-time password (at %s)", b.Location())
	}
	b.Submit(map[string]string{"password": "ana-own-password-1", "confirm": "ana-own-password-1"})
	app.finish(b, s)

	// Returning, password only, in a fresh browser.
	b = browsertest.New(t)
	s = app.start(b)
	b.Submit(map[string]string{"username": "desk-ana", "password": "ana-own-password-1"})
	desk := app.finish(b, s)
	expect(t, "the receptionist's token at the API", is.do("GET", "/v1/me", desk.AccessToken, nil), 200)
	if m := mb.next(t); m.to != "ana@hospital.example" || m.subject != "New sign-in to your caregrid account" {
		t.Fatalf("a sign-in from a second browser: mail %+v", m)
	}

	// A doctor's first sign-in: TOTP enrolment is required.
	const doctorID = "3a4b5c6d-0000-4000-8000-0000000d0c70"
	is.account(doctorID, "dr-ion", "doctor", "doctor-pass-1234", false)
	b = browsertest.New(t)
	s = app.start(b)
	b.Submit(map[string]string{"username": "dr-ion", "password": "doctor-pass-1234"})
	secret := b.Text(`#secret`)
	code, err := totp.GenerateCode(secret, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.Submit(map[string]string{"code": code})
	recovery := recoveryCode.FindAllString(b.Text(`#recovery-codes`), -1)
	if len(recovery) != 10 {
		t.Fatalf("recovery codes = %v", recovery)
	}
	b.Click(`#continue`)
	app.finish(b, s)

	// Returning with a code of a later step (a code works once).
	clock.Shift(time.Minute)
	b = browsertest.New(t)
	s = app.start(b)
	b.Submit(map[string]string{"username": "dr-ion", "password": "doctor-pass-1234"})
	code, _ = totp.GenerateCode(secret, clock.Now())
	b.Submit(map[string]string{"code": code})
	app.finish(b, s)

	// With a recovery code instead.
	b = browsertest.New(t)
	s = app.start(b)
	b.Submit(map[string]string{"username": "dr-ion", "password": "doctor-pass-1234"})
	b.Submit(map[string]string{"code": recovery[0]})
	app.finish(b, s)

	// A forgotten password: the link by email, a new password, a sign-in.
	b = browsertest.New(t)
	s = app.start(b)
	b.Click(`a[href*="/forgot"]`)
	b.Submit(map[string]string{"username": "desk-ana"})
	link := linkPattern.FindString(mb.next(t).body)
	if link == "" {
		t.Fatal("no reset link in the mail")
	}
	b.Go(link)
	b.Submit(map[string]string{"password": "ana-newer-password-2", "confirm": "ana-newer-password-2"})
	s = app.start(b)
	b.Submit(map[string]string{"username": "desk-ana", "password": "ana-newer-password-2"})
	app.finish(b, s)
	if m := mb.next(t); m.subject != "New sign-in to your caregrid account" {
		t.Fatalf("a sign-in from a third browser: mail %+v", m)
	}

	// A patient creates her account: the record's email confirms it.
	r := is.do("POST", "/v1/patients", is.token(messages.Role_ROLE_RECEPTIONIST, "desk-1"), patientBody("2005042129809")) // maria@example.md
	expect(t, "register the record", r, 201)
	patientID := r.json(t)["id"].(string)
	b = browsertest.New(t)
	s = app.start(b)
	b.Click(`a[href*="/register"]`)
	b.Submit(map[string]string{"idnp": "2005042129809", "username": "maria", "password": "maria-password-1", "confirm": "maria-password-1"})
	m := mb.next(t)
	link = linkPattern.FindString(m.body)
	if m.to != "maria@example.md" || !strings.Contains(link, "/login/verify") {
		t.Fatalf("sign-up mail = %+v", m)
	}
	b.Go(link)
	b.Click(`form [type=submit]`)
	s = app.start(b)
	b.Submit(map[string]string{"username": "maria", "password": "maria-password-1"})
	patient := app.finish(b, s)
	r = is.do("GET", "/v1/me", patient.AccessToken, nil)
	expect(t, "the patient's token", r, 200)
	if got := r.json(t)["subject"]; got != patientID {
		t.Fatalf("the patient's account is %v, want her record %s", got, patientID)
	}

	// Logout: the app sends the browser to end_session, which returns it to
	// the app and ends the session (its tokens stop working).
	idToken, _ := patient.Extra("id_token").(string)
	b.Go(is.issuer + "/end_session?" + url.Values{"id_token_hint": {idToken}, "client_id": {browserClient},
		"post_logout_redirect_uri": {app.server.URL + "/bye"}}.Encode())
	if loc := b.Location(); !strings.HasPrefix(loc, app.server.URL+"/bye") {
		t.Fatalf("logout ended at %s", loc)
	}
	expect(t, "the patient's token after logout", is.do("GET", "/v1/me", patient.AccessToken, nil), 401)
	b.NoCSPViolations()
}

// TestBrowserSignInInRomanianWithTheQRCode: an app that asks for Romanian
// (ui_locales=ro) gets every page of a doctor's first sign-in in Romanian,
// the language carried from page to page, and the enrolment page shows the
// key as a QR code the browser renders (the CSP lets its data: image in).
func TestBrowserSignInInRomanianWithTheQRCode(t *testing.T) {
	clock := &testClock{}
	is := startIdentityServer(t, func(c *identity.Config) { c.Now = clock.Now })
	app := startBrowserApp(t, is)
	const doctorID = "7b8c9d0e-0000-4000-8000-0000000d0c70"
	is.account(doctorID, "dr-ana", "doctor", "doctor-pass-1234", false)
	b := browsertest.New(t)
	s := app.start(b, oauth2.SetAuthURLParam("ui_locales", "ro"))
	if lang := b.Text(`button[type=submit]`); lang != "Autentificare" {
		t.Fatalf("the sign-in button reads %q, want Romanian", lang)
	}
	b.Submit(map[string]string{"username": "dr-ana", "password": "doctor-pass-1234"})
	if got := b.Text(`h1`); got != "Configurați aplicația de autentificare" {
		t.Fatalf("the enrolment page's title is %q", got)
	}
	if !b.Rendered(`img#qr`) {
		t.Fatal("the QR code did not render")
	}
	code, err := totp.GenerateCode(b.Text(`#secret`), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.Submit(map[string]string{"code": code})
	if got := b.Text(`#continue`); got != "Le-am salvat: continuă" {
		t.Fatalf("the recovery page's link reads %q", got)
	}
	b.Click(`#continue`)
	app.finish(b, s)
}

// TestBrowserSignInInRussian: an app that asks for Russian gets the login
// page, a wrong password's error and the way back to the app in Russian.
func TestBrowserSignInInRussian(t *testing.T) {
	is := startIdentityServer(t, nil)
	app := startBrowserApp(t, is)
	is.account("8c9d0e1f-0000-4000-8000-00000000de5c", "desk-olga", "receptionist", "olga-password-12", false)
	b := browsertest.New(t)
	s := app.start(b, oauth2.SetAuthURLParam("ui_locales", "ru"))
	if got := b.Text(`button[type=submit]`); got != "Вход" {
		t.Fatalf("the sign-in button reads %q, want Russian", got)
	}
	b.Submit(map[string]string{"username": "desk-olga", "password": "wrong-password-1"})
	if got := b.Text(`#error`); got != "Неверное имя пользователя или пароль." {
		t.Fatalf("the error reads %q", got)
	}
	b.Submit(map[string]string{"username": "desk-olga", "password": "olga-password-12"})
	app.finish(b, s)
}
