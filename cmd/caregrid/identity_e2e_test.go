package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// identityServer is a node with the embedded OpenID Provider, a public
// client registered for a loopback redirect, and an OAuth client library
// (golang.org/x/oauth2 with coreos/go-oidc) pointed at it.
type identityServer struct {
	*testServer
	issuer   string
	provider *oidc.Provider
	oauth    oauth2.Config
	clientID string
}

const testRedirect = "http://127.0.0.1:1/callback" // never dialled: the browser stops at it

func startIdentityServer(t *testing.T, tune func(*identity.Config), node ...func(*nodeConfig)) *identityServer {
	t.Helper()
	ic := &identity.Config{Limiter: ratelimit.NewLocal(1000)}
	if tune != nil {
		tune(ic)
	}
	s := startTestServerWithIdentity(t, nil, ic, node...)
	is := &identityServer{testServer: s, issuer: s.base + identity.PathPrefix, clientID: "test-app"}
	ctx := context.Background()
	if err := s.db.CreateClient(ctx, persistence.Client{ID: is.clientID, Name: "test app", Kind: "public", RedirectURIs: []string{testRedirect}}); err != nil {
		t.Fatal(err)
	}
	var err error
	is.provider, err = oidc.NewProvider(ctx, is.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	is.oauth = oauth2.Config{ClientID: is.clientID, Endpoint: is.provider.Endpoint(), RedirectURL: testRedirect,
		Scopes: []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}}
	return is
}

// account creates an account with a password (and a TOTP secret when totp is set).
func (is *identityServer) account(id, username, role, password string, mustChange bool) {
	is.t.Helper()
	hash, err := identity.HashPassword(password)
	if err != nil {
		is.t.Fatal(err)
	}
	if err := is.db.CreateAccount(context.Background(), persistence.Account{ID: id, Username: username, Role: role, PasswordHash: hash, MustChangePassword: mustChange}); err != nil {
		is.t.Fatal(err)
	}
}

// browser follows redirects itself, so the test sees each page and can
// stop at the client's redirect URI.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	url    string
	body   string
	header http.Header
}

// get follows redirects until a page, or until the redirect URI.
func (b *browser) get(u string) page {
	b.t.Helper()
	for range 10 {
		if strings.HasPrefix(u, testRedirect) {
			return page{status: http.StatusFound, url: u}
		}
		resp, err := b.client.Get(u)
		if err != nil {
			b.t.Fatalf("GET %s: %v", u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther {
			next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
			u = next.String()
			continue
		}
		if next := metaRefresh.FindStringSubmatch(string(body)); next != nil {
			to, _ := resp.Request.URL.Parse(html.UnescapeString(next[1]))
			u = to.String() // as a browser moves on from the page
			continue
		}
		return page{status: resp.StatusCode, url: u, body: string(body), header: resp.Header}
	}
	b.t.Fatal("too many redirects")
	return page{}
}

var metaRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]+)">`)

var formAction = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// submit posts the page's form with its hidden fields plus fields, and
// follows where it leads.
func (b *browser) submit(p page, fields map[string]string) page {
	b.t.Helper()
	m := formAction.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("page %s has no form:\n%s", p.url, p.body)
	}
	base, _ := url.Parse(p.url)
	action, _ := base.Parse(html.UnescapeString(m[1]))
	form := url.Values{}
	for _, h := range hiddenInput.FindAllStringSubmatch(p.body, -1) {
		form.Set(h[1], html.UnescapeString(h[2]))
	}
	for k, v := range fields {
		form.Set(k, v)
	}
	resp, err := b.client.PostForm(action.String(), form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", action, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusFound {
		next, _ := action.Parse(resp.Header.Get("Location"))
		return b.get(next.String())
	}
	if next := metaRefresh.FindStringSubmatch(string(body)); next != nil {
		to, _ := action.Parse(html.UnescapeString(next[1]))
		return b.get(to.String())
	}
	return page{status: resp.StatusCode, url: action.String(), body: string(body), header: resp.Header}
}

func textOf(p page, pattern string) string {
	m := regexp.MustCompile(pattern).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// login starts an authorization request with PKCE and returns the login
// page and the PKCE verifier.
func (is *identityServer) login(b *browser) (page, string, string) {
	verifier := oauth2.GenerateVerifier()
	state, nonce := "st-"+verifier[:8], "n-"+verifier[8:16]
	p := b.get(is.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)))
	if p.status != http.StatusOK || !strings.Contains(p.body, `name="password"`) {
		is.t.Fatalf("login page: %d %s", p.status, p.body)
	}
	return p, verifier, nonce
}

// exchange takes the redirect's code to the token endpoint and checks the ID token.
func (is *identityServer) exchange(p page, verifier, nonce string) *oauth2.Token {
	is.t.Helper()
	if !strings.HasPrefix(p.url, testRedirect) {
		is.t.Fatalf("login did not return to the client: %d %s\n%s", p.status, p.url, p.body)
	}
	u, _ := url.Parse(p.url)
	ctx := context.Background()
	tok, err := is.oauth.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		is.t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := is.provider.Verifier(&oidc.Config{ClientID: is.clientID}).Verify(ctx, raw)
	if err != nil {
		is.t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		is.t.Fatalf("ID token nonce %q, want %q", idt.Nonce, nonce)
	}
	return tok
}

func TestOIDCLoginWithPKCEAndTOTPThenRefreshAndLogout(t *testing.T) {
	clock := &testClock{}
	is := startIdentityServer(t, func(c *identity.Config) { c.Now = clock.Now })
	adminID := "8d7f8a59-5d7e-4c33-9a55-0a6f2e1c0d11"
	is.account(adminID, "chief", "admin", "first-password-123", true)
	b := newBrowser(t)

	// An admin's first login: password, a new password, TOTP enrolment.
	p, verifier, nonce := is.login(b)
	if again := b.submit(p, map[string]string{"username": "chief", "password": "wrong-password-000"}); again.status != http.StatusUnauthorized || !strings.Contains(again.body, "wrong") {
		t.Fatalf("wrong password: %d %s", again.status, again.body)
	}
	p = b.submit(p, map[string]string{"username": "chief", "password": "first-password-123"})
	if !strings.Contains(p.body, "new password") {
		t.Fatalf("want the new-password page, got %d %s", p.status, p.body)
	}
	if short := b.submit(p, map[string]string{"password": "short", "confirm": "short"}); short.status != http.StatusBadRequest {
		t.Fatalf("a short new password: %d", short.status)
	}
	p = b.submit(p, map[string]string{"password": "the-new-password-456", "confirm": "the-new-password-456"})
	secret := textOf(p, `<code id="secret">([A-Z2-7]+)</code>`)
	if secret == "" {
		t.Fatalf("want the TOTP enrolment page, got %d %s", p.status, p.body)
	}
	bad := b.submit(p, map[string]string{"code": "000000"})
	if bad.status != http.StatusBadRequest {
		t.Fatalf("a wrong enrolment code: %d", bad.status)
	}
	if secret2 := textOf(bad, `<code id="secret">([A-Z2-7]+)</code>`); secret2 == "" || secret2 == secret {
		t.Fatalf("a failed enrolment must offer a new secret: %q then %q", secret, secret2)
	} else {
		secret = secret2
	}
	codeAt := clock.Now()
	code, err := identity.TOTPCode(secret, codeAt)
	if err != nil {
		t.Fatal(err)
	}
	// The secret travels sealed to this request: a forged one is refused.
	if forged := b.submit(bad, map[string]string{"sealed": "AAAA", "code": code}); forged.status != http.StatusBadRequest {
		t.Fatalf("a forged enrolment secret: %d", forged.status)
	}
	p = b.submit(bad, map[string]string{"code": code})
	recovery := regexp.MustCompile(`<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>`).FindAllStringSubmatch(p.body, -1)
	if len(recovery) != identity.RecoveryCodeCount {
		t.Fatalf("want %d recovery codes, got %d: %s", identity.RecoveryCodeCount, len(recovery), p.body)
	}
	tok := is.exchange(b.get(textOf(p, `<a id="continue" href="([^"]+)"`)), verifier, nonce)

	me := is.do("GET", "/v1/me", tok.AccessToken, nil)
	if me.status != 200 {
		t.Fatalf("/v1/me: %d %s", me.status, me.body)
	}
	if m := me.json(t); m["subject"] != adminID || m["role"] != "admin" || m["client_id"] != is.clientID || m["session_id"] == "" {
		t.Fatalf("/v1/me = %v", m)
	}
	// The token works on the API, with the role it carries.
	if r := is.do("POST", "/v1/clinics", tok.AccessToken, map[string]string{"name": "Clinica 1", "address": "Chisinau", "time_zone": "Europe/Chisinau"}); r.status != 201 {
		t.Fatalf("create a clinic with an OIDC admin token: %d %s", r.status, r.body)
	}

	// Later logins ask for the code; a recovery code works once.
	b2 := newBrowser(t)
	p, verifier2, nonce2 := is.login(b2)
	p = b2.submit(p, map[string]string{"username": "chief", "password": "the-new-password-456"})
	if !strings.Contains(p.body, `name="code"`) || strings.Contains(p.body, "secret") {
		t.Fatalf("want the code page, got %d %s", p.status, p.body)
	}
	if wrong := b2.submit(p, map[string]string{"code": "123456"}); wrong.status != http.StatusUnauthorized {
		t.Fatalf("a wrong code: %d", wrong.status)
	}
	// The code that confirmed the enrolment is spent: within its 30 s it is
	// refused. The provider's clock is put back to the moment the code was
	// made, so the refusal cannot come from the code having gone stale.
	clock.Shift(time.Until(codeAt))
	replay := b2.submit(p, map[string]string{"code": code})
	clock.Shift(0)
	if replay.status != http.StatusUnauthorized {
		t.Fatalf("a replayed TOTP code: %d, want 401", replay.status)
	}
	tok2 := is.exchange(b2.submit(p, map[string]string{"code": recovery[0][1]}), verifier2, nonce2)
	b3 := newBrowser(t)
	p, _, _ = is.login(b3)
	p = b3.submit(p, map[string]string{"username": "chief", "password": "the-new-password-456"})
	if reused := b3.submit(p, map[string]string{"code": recovery[0][1]}); reused.status != http.StatusUnauthorized {
		t.Fatalf("a spent recovery code: %d", reused.status)
	}

	sessions := is.do("GET", "/v1/me/sessions", tok.AccessToken, nil)
	if list, _ := sessions.json(t)["sessions"].([]any); sessions.status != 200 || len(list) != 2 {
		t.Fatalf("/v1/me/sessions: %d %s", sessions.status, sessions.body)
	}

	// Refresh rotates the refresh token; the spent one, presented again,
	// ends the session: the new tokens stop working too.
	ctx := context.Background()
	refreshed, err := is.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken || refreshed.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	if r := is.do("GET", "/v1/me", refreshed.AccessToken, nil); r.status != 200 {
		t.Fatalf("refreshed token: %d", r.status)
	}
	_, err = is.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("a reused refresh token: %v, want invalid_grant", err)
	}
	for name, at := range map[string]string{"original": tok.AccessToken, "refreshed": refreshed.AccessToken} {
		if r := is.do("GET", "/v1/me", at, nil); r.status != 401 {
			t.Errorf("%s access token after refresh-token reuse: %d, want 401", name, r.status)
		}
	}
	if _, err := is.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshed.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token(); err == nil {
		t.Error("the session's newest refresh token still works after a reuse")
	}

	// The other session is untouched; logging out (end session with the ID token) ends it.
	if r := is.do("GET", "/v1/me", tok2.AccessToken, nil); r.status != 200 {
		t.Fatalf("second session: %d", r.status)
	}
	endSession := is.issuer + "/end_session?id_token_hint=" + url.QueryEscape(tok2.Extra("id_token").(string)) + "&client_id=" + is.clientID
	if out := b2.get(endSession); out.status != 200 || !strings.Contains(out.body, "signed out") {
		t.Fatalf("end session: %d %s", out.status, out.body)
	}
	if r := is.do("GET", "/v1/me", tok2.AccessToken, nil); r.status != 401 {
		t.Fatalf("access token after logout: %d, want 401", r.status)
	}

	// An admin who lost the authenticator: another admin removes the second
	// factor (POST .../reset-totp) and the next login enrols a new one.
	other := is.token(messages.Role_ROLE_ADMIN, "admin-2")
	if r := is.do("POST", "/v1/accounts/"+adminID+"/reset-totp", other, nil); r.status != 200 || r.json(t)["totp_enrolled"] != false {
		t.Fatalf("reset-totp: %d %s", r.status, r.body)
	}
	b4 := newBrowser(t)
	p, _, _ = is.login(b4)
	if p = b4.submit(p, map[string]string{"username": "chief", "password": "the-new-password-456"}); !strings.Contains(p.body, `name="sealed"`) {
		t.Fatalf("after reset-totp, want the enrolment page: %d %s", p.status, p.body)
	}

	// Every login attempt is in the audit trail, failures included.
	var logins, failed int
	err = is.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'login'), count(*) FILTER (WHERE action = 'login' AND outcome <> 'success')
		FROM audit_events`).Scan(&logins, &failed)
	if err != nil {
		t.Fatal(err)
	}
	// Two logins succeeded; a wrong password, a wrong code, a replayed code
	// and a spent recovery code failed (the last login stopped at enrolment).
	if logins != 6 || failed != 4 {
		t.Errorf("audit holds %d logins, %d failed; want 6 and 4", logins, failed)
	}
}

func TestPublicClientsMustUsePKCE(t *testing.T) {
	is := startIdentityServer(t, nil)
	b := newBrowser(t)
	p := b.get(is.oauth.AuthCodeURL("state-1"))
	if p.url == "" || !strings.HasPrefix(p.url, testRedirect) || !strings.Contains(p.url, "error=invalid_request") {
		t.Fatalf("an authorization request without PKCE: %d %s %s", p.status, p.url, p.body)
	}
}

func TestLoginThrottlingAndLockout(t *testing.T) {
	is := startIdentityServer(t, func(c *identity.Config) {
		c.PerAccount = ratelimit.PerMinute(100)
		c.PerAddress = ratelimit.PerMinute(100)
		c.LockAfter = 3
		c.LockFor = time.Hour
	})
	patientID := "3f0c2a7e-1b1d-4c6e-8f7a-2d9b5e4c1a00"
	is.account(patientID, "ion", "patient", "ion-password-123", false)
	b := newBrowser(t)
	p, _, _ := is.login(b)
	for i := range 2 {
		if r := b.submit(p, map[string]string{"username": "ion", "password": "bad-password-000"}); r.status != http.StatusUnauthorized {
			t.Fatalf("bad password %d: %d", i+1, r.status)
		}
	}
	if r := b.submit(p, map[string]string{"username": "ion", "password": "bad-password-000"}); r.status != http.StatusForbidden || !strings.Contains(r.body, "locked") {
		t.Fatalf("third bad password: %d %s, want the account locked", r.status, r.body)
	}
	if r := b.submit(p, map[string]string{"username": "ion", "password": "ion-password-123"}); r.status != http.StatusForbidden {
		t.Fatalf("the right password on a locked account: %d, want 403", r.status)
	}
	var denied int
	if err := is.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = 'login' AND outcome = 'denied' AND patient_id = $1`, patientID).Scan(&denied); err != nil {
		t.Fatal(err)
	}
	if denied != 1 {
		t.Errorf("denied logins on the patient's record: %d, want 1", denied)
	}
	// The patient's access log shows them as attempts on the account, by a
	// keyed hash of the name typed, not as the patient's own acts.
	var asPatient, attempts int
	if err := is.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE subject = $1 OR role = 'patient'),
		count(*) FILTER (WHERE subject LIKE 'attempt:%' AND role = '')
		FROM audit_events WHERE action = 'login' AND outcome <> 'success' AND patient_id = $1`, patientID).Scan(&asPatient, &attempts); err != nil {
		t.Fatal(err)
	}
	if asPatient != 0 || attempts != 4 {
		t.Errorf("failed logins on the patient's record: %d as the patient, %d as attempts; want 0 and 4", asPatient, attempts)
	}
}

// Per source address: the budget runs out whatever the account (a test of
// its own, for a fresh address budget).
func TestLoginThrottledPerSourceAddress(t *testing.T) {
	is2 := startIdentityServer(t, func(c *identity.Config) { c.PerAddress = ratelimit.PerMinute(3) })
	b := newBrowser(t)
	p, _, _ := is2.login(b)
	for i := range 3 {
		if r := b.submit(p, map[string]string{"username": "nobody-" + string(rune('a'+i)), "password": "x-password-0000"}); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, r.status)
		}
	}
	r := b.submit(p, map[string]string{"username": "someone-else", "password": "x-password-0000"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth attempt from one address: %d (Retry-After %q), want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

func TestServiceClientGetsItsGrantedRoleThroughClientCredentials(t *testing.T) {
	is := startIdentityServer(t, nil)
	ctx := context.Background()
	var out bytes.Buffer
	if err := createClient(ctx, is.db, clientFlags{name: "lab importer", kind: "service", role: "receptionist"}, &out); err != nil {
		t.Fatal(err)
	}
	id := textOf(page{body: out.String()}, `client id: (\S+)`)
	secret := textOf(page{body: out.String()}, `client secret: (\S+)`)
	if id == "" || secret == "" {
		t.Fatalf("admin client create printed %q", out.String())
	}
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: is.provider.Endpoint().TokenURL}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	me := is.do("GET", "/v1/me", tok.AccessToken, nil)
	if m := me.json(t); me.status != 200 || m["role"] != "receptionist" || m["client_id"] != id {
		t.Fatalf("/v1/me for the service client: %d %v", me.status, m)
	}
	// A receptionist may register patients, not create clinics.
	if r := is.do("POST", "/v1/clinics", tok.AccessToken, map[string]string{"name": "X", "address": "Y", "time_zone": "Europe/Chisinau"}); r.status != 403 {
		t.Fatalf("a receptionist service client created a clinic: %d", r.status)
	}
	wrong := clientcredentials.Config{ClientID: id, ClientSecret: secret + "x", TokenURL: cc.TokenURL}
	if _, err := wrong.Token(ctx); err == nil {
		t.Fatal("a wrong client secret got a token")
	}
	// Revoking the token ends its session.
	revoke(t, is.issuer, id, secret, tok.AccessToken)
	if r := is.do("GET", "/v1/me", tok.AccessToken, nil); r.status != 401 {
		t.Fatalf("a revoked token: %d, want 401", r.status)
	}
}

// revoke revokes an access token at issuer's revocation endpoint, as the
// service client clientID.
func revoke(t *testing.T, issuer, clientID, secret, token string) {
	t.Helper()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, _ := http.NewRequest("POST", issuer+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
}

func TestAdminBootstrapOnlyOnce(t *testing.T) {
	db := pgtest.New(t)
	var out bytes.Buffer
	if err := bootstrap(context.Background(), db, &out); err != nil {
		t.Fatal(err)
	}
	pw := textOf(page{body: out.String()}, `one-time password: (\S+)`)
	acct, err := db.AccountByUsername(context.Background(), "admin")
	if err != nil || acct.Role != "admin" || !acct.MustChangePassword || !identity.VerifyPassword(pw, acct.PasswordHash) {
		t.Fatalf("bootstrap made %+v (%v); printed %q", acct, err, out.String())
	}
	if !strings.HasPrefix(acct.PasswordHash, "$argon2id$") {
		t.Fatalf("password hash %q is not argon2id", acct.PasswordHash)
	}
	if err := bootstrap(context.Background(), db, &out); err == nil {
		t.Fatal("a second bootstrap succeeded")
	}
}

// A node configured with an external issuer accepts its tokens beside the
// provider's (the issuer is faked at its wire protocol: JWKS over HTTP).
func TestNodeAcceptsAConfiguredExternalIssuer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"}}})
	}))
	defer jwks.Close()
	issuer := jwks.URL + "/idp"
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) {
		c.ExternalIssuers = []identity.ExternalIssuer{{Issuer: issuer, Audience: "caregrid", JWKSURL: jwks.URL, RoleClaim: "roles",
			Roles: []identity.RoleMapping{{Value: "desk", Role: "receptionist"}}}}
	})
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k"))
	tok, _ := jwt.Signed(signer).Claims(map[string]any{"iss": issuer, "aud": "caregrid", "sub": "desk-9", "roles": []string{"desk"},
		"exp": time.Now().Add(time.Minute).Unix()}).Serialize()
	r := s.do("GET", "/v1/me", tok, nil)
	if m := r.json(t); r.status != 200 || m["subject"] != "desk-9" || m["role"] != "receptionist" {
		t.Fatalf("/v1/me with an external token: %d %s", r.status, r.body)
	}
	expect(t, "register a patient with an external desk token", s.do("POST", "/v1/patients", tok, patientBody("2005042129809")), 201)
	bad, _ := jwt.Signed(signer).Claims(map[string]any{"iss": issuer, "aud": "caregrid", "sub": "x", "roles": []string{"nurse"},
		"exp": time.Now().Add(time.Minute).Unix()}).Serialize()
	expect(t, "an unmapped role", s.do("GET", "/v1/me", bad, nil), 401)
}

// Patients may add a second factor: asked for at sign-in, skippable, and
// once set up, required at every later sign-in.
func TestPatientsMayChooseTOTP(t *testing.T) {
	is := startIdentityServer(t, nil)
	is.account("5b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "radu", "patient", "radu-password-123", false)
	b := newBrowser(t)
	p, verifier, nonce := is.login(b)
	plain := b.submit(p, map[string]string{"username": "radu", "password": "radu-password-123", "setup_totp": "on"})
	if !strings.Contains(plain.body, "Not now") || !strings.Contains(plain.body, `name="sealed"`) {
		t.Fatalf("a patient asking for TOTP: %d %s", plain.status, plain.body)
	}
	// "Not now" (the page's second form) signs in without it.
	skipForm := plain
	skipForm.body = plain.body[strings.LastIndex(plain.body[:strings.Index(plain.body, "/skip-totp")], "<form"):]
	is.exchange(b.submit(skipForm, nil), verifier, nonce)

	// Asked again, and set up this time: from then on the code is required.
	b = newBrowser(t)
	p, verifier, nonce = is.login(b)
	enrol := b.submit(p, map[string]string{"username": "radu", "password": "radu-password-123", "setup_totp": "on"})
	secret := textOf(enrol, `<code id="secret">([A-Z2-7]+)</code>`)
	code, err := identity.TOTPCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	done := b.submit(enrol, map[string]string{"code": code})
	is.exchange(b.get(textOf(done, `<a id="continue" href="([^"]+)"`)), verifier, nonce)
	b = newBrowser(t)
	p, _, _ = is.login(b)
	if next := b.submit(p, map[string]string{"username": "radu", "password": "radu-password-123"}); !strings.Contains(next.body, `name="code"`) || strings.Contains(next.body, "sealed") {
		t.Fatalf("after enrolling, want the code page: %d %s", next.status, next.body)
	}

	// A doctor cannot skip: the page offers no "Not now", and posting it anyway
	// leads back to the enrolment.
	is.account("6c2e3d4f-5061-4b7c-8d9e-0f1a2b3c4d5e", "dr-radu", "doctor", "doctor-password-12", false)
	b = newBrowser(t)
	p, _, _ = is.login(b)
	enrol = b.submit(p, map[string]string{"username": "dr-radu", "password": "doctor-password-12"})
	if strings.Contains(enrol.body, "Not now") {
		t.Fatal("a doctor is offered to skip TOTP")
	}
	forged := enrol
	forged.body = strings.Replace(enrol.body, `action="`+is.issuer[len(is.base):]+`/login/enrol"`, `action="`+is.issuer[len(is.base):]+`/login/skip-totp"`, 1)
	if after := b.submit(forged, nil); after.status != 200 || !strings.Contains(after.body, `name="sealed"`) {
		t.Fatalf("a doctor posting skip-totp: %d %s", after.status, after.body)
	}
}
