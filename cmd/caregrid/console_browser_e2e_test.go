package main

import (
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/locale"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/internal/browsertest"
	"github.com/caregrid/caregrid/persistence"
	"github.com/pquerna/otp/totp"
	"golang.org/x/text/language"
)

// consoleSignIn opens a console page in a fresh browser and signs in as
// an account with a password through the provider's pages; an admin's
// first sign-in enrols TOTP (its secret is returned), a later one gives a
// code. It returns once the page's script has signed in and filled it.
func consoleSignIn(t *testing.T, base, path, username, password, secret string) (*browsertest.Browser, string) {
	t.Helper()
	b := browsertest.New(t)
	b.Go(base + path)
	b.WaitFor(`input[name=password]`) // the script sent the browser to the provider
	b.Submit(map[string]string{"username": username, "password": password})
	switch {
	case b.Has(`#secret`): // first sign-in: enrol
		secret = b.Text(`#secret`)
		code, err := totp.GenerateCode(secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b.Submit(map[string]string{"code": code})
		b.Click(`#continue`)
	case b.Has(`input[name=code]`):
		code, err := totp.GenerateCode(secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b.Submit(map[string]string{"code": code})
	}
	b.WaitFor(`body[data-ready=true], #denied:not([hidden])`)
	return b, secret
}

// TestConsoleInTheBrowser drives the console in Chromium as an admin: the
// sign-in (a public client with PKCE, created at start), the cluster page,
// an account created and disabled, the audit trail filtered and
// downloaded as CSV, a check of the trail, every page in Romanian too; axe
// finds no serious accessibility violation on any page, the browser
// reports no CSP violation, and each page's screenshot is kept. A doctor
// who signs in is told the console is not for them and sees no data.
func TestConsoleInTheBrowser(t *testing.T) {
	is := startIdentityServer(t, func(c *identity.Config) {
		c.Mailer = identity.LogMailer{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	})
	const adminID = "6d2c1b0a-0000-4000-8000-00000000ad01"
	is.account(adminID, "admin-ana", "admin", "admin-password-1", false)
	b, _ := consoleSignIn(t, is.base, "/console/accounts", "admin-ana", "admin-password-1", "")
	if loc := b.Location(); !strings.HasPrefix(loc, is.base+"/console/accounts") {
		t.Fatalf("after the sign-in the browser is at %s", loc)
	}
	b.Accessible("accounts")
	b.Keep("accounts")

	// An account created, then disabled.
	b.Fill(map[string]string{"username": "desk-nou", "email": "nou@hospital.example", "display_name": "Ion Nou"})
	b.Press(`#create-account button[type=submit]`)
	b.WaitFor(`#accounts tr[data-username="desk-nou"][data-status=awaitingPassword]`)
	b.Press(`#accounts tr[data-username="desk-nou"] button[data-action=disable]`)
	b.WaitFor(`#accounts tr[data-username="desk-nou"][data-status=disabled]`)
	var disabled bool
	if err := is.db.Pool.QueryRow(context.Background(), `SELECT disabled FROM accounts WHERE username = 'desk-nou'`).Scan(&disabled); err != nil || !disabled {
		t.Fatalf("the account disabled in the console: disabled=%v, %v", disabled, err)
	}
	b.Keep("accounts after disabling")

	// The cluster: this one member, up.
	b.Go(is.base + "/console/cluster")
	b.WaitFor(`body[data-ready=true]`)
	b.WaitFor(`#members tr[data-status=up]`)
	b.Press(`#members tr[data-status=up] th button`)
	b.WaitFor(`#member-detail:not([hidden]) #member-stats dd`)
	b.Accessible("cluster")
	b.Keep("cluster")

	// The audit trail: the admin's own acts, filtered and downloaded.
	b.Go(is.base + "/console/audit")
	b.WaitFor(`body[data-ready=true]`)
	b.Fill(map[string]string{"actor": adminID})
	b.Press(`#audit-filter button[type=submit]`)
	b.WaitFor(`#audit-events[data-query*="actor="] tbody tr`)
	rows := browsertest.Eval[int](b, `document.querySelectorAll("#audit-events tbody tr").length`)
	b.Downloads()
	b.Press(`#audit-csv`)
	records, err := csv.NewReader(strings.NewReader(string(b.Downloaded()))).ReadAll()
	if err != nil || len(records) != rows+2 || records[0][3] != "subject" { // and the CSV's own search, newest
		t.Fatalf("the CSV (%d rows on the page): %q, %v", rows, records, err)
	}
	for _, r := range records[1:] {
		if r[3] != adminID {
			t.Fatalf("a row of another actor in the filtered CSV: %q", r)
		}
	}
	b.Press(`#check-now`)
	b.WaitFor(`#checks tr[data-status=intact]`)
	b.Accessible("audit")
	b.Keep("audit")

	// A clinic and a doctor created, the doctor edited and given hours.
	b.Go(is.base + "/console/directory")
	b.WaitFor(`body[data-ready=true]`)
	b.Fill(map[string]string{"name": "Clinica Nord", "address": "Bălți, str. Independenței 1"})
	b.Press(`#clinic-form button[type=submit]`)
	b.WaitFor(`#doctor-clinic option`)
	b.Fill(map[string]string{"given_name": "Maria", "family_name": "Ceban", "specialty": "Cardiology"})
	b.Press(`#doctor-form button[type=submit]`)
	b.WaitFor(`#doctors tbody tr`)
	b.Press(`#doctors tbody tr button:first-child`) // Edit
	b.Fill(map[string]string{"specialty": "Neurology"})
	b.Press(`#doctor-form button[type=submit]`)
	await.Until(t, "the doctor's new specialty stored", 30*time.Second, func() bool {
		if e := browsertest.Eval[string](b, `document.querySelector("#error").textContent`); e != "" {
			t.Fatalf("the page says: %s", e)
		}
		var specialty string
		err := is.db.Pool.QueryRow(context.Background(), `SELECT specialty FROM doctors WHERE family_name = 'Ceban'`).Scan(&specialty)
		return err == nil && strings.EqualFold(specialty, "Neurology")
	})
	// The save re-renders the table: press the new row's button, not the
	// one the save replaced (a press on the old node fails, "could not
	// find node").
	await.Until(t, "the table showing the new specialty", 30*time.Second, func() bool {
		return strings.Contains(strings.ToLower(browsertest.Eval[string](b, `document.querySelector("#doctors tbody tr")?.textContent ?? ""`)), "neurology")
	})
	b.Press(`#doctors tbody tr button:last-child`) // Working hours
	b.WaitFor(`#hours:not([hidden]) input[name=monday]`)
	b.Fill(map[string]string{"monday": "08:00-12:00, 13:00-17:00"})
	b.Press(`#hours-form button[type=submit]`)
	await.Until(t, "the hours saved", 30*time.Second, func() bool {
		var weekly string
		err := is.db.Pool.QueryRow(context.Background(), `SELECT availability->>'weekly' FROM doctors WHERE family_name = 'Ceban'`).Scan(&weekly)
		return err == nil && strings.Contains(weekly, "13:00")
	})
	b.Accessible("clinics and doctors")
	b.Keep("clinics and doctors")

	for _, p := range []string{"clients", "reviews", "analytics"} {
		b.Go(is.base + "/console/" + p)
		b.WaitFor(`body[data-ready=true]`)
		b.Accessible(p)
		b.Keep(p)
	}
	b.WaitFor(`#trend tbody tr`) // analytics: the periods, even with no appointments

	// In Romanian: the frame and the script's texts.
	ro := locale.For("ro", "", language.English)
	b.Go(is.base + "/console/cluster?lang=ro")
	b.WaitFor(`body[data-ready=true]`)
	b.WaitFor(`#members tr[data-status=up]`)
	if h1, badge := b.Text("h1"), b.Text(`#members .badge`); h1 != ro.T("Cluster") || h1 == "Cluster" || badge != ro.T("up") || badge == "up" {
		t.Fatalf("in Romanian: h1 %q, status %q", h1, badge)
	}
	b.Accessible("cluster in Romanian")
	b.Keep("cluster in Romanian")

	// Every page in Russian: the frame, the navigation and what the script
	// fills in.
	ru := locale.For("ru", "", language.English)
	for _, p := range []struct{ path, title string }{{"cluster", "Cluster"}, {"accounts", "Accounts"}, {"directory", "Clinics and doctors"},
		{"clients", "Service clients"}, {"reviews", "Privacy reviews"}, {"audit", "Audit trail"}, {"analytics", "Analytics"}} {
		b.Go(is.base + "/console/" + p.path + "?lang=ru")
		b.WaitFor(`body[data-ready=true]`)
		if h1 := b.Text("h1"); h1 != ru.T(p.title) || h1 == p.title {
			t.Fatalf("%s in Russian: h1 %q", p.path, h1)
		}
		if nav := b.Text(`header nav ul`); !strings.Contains(nav, ru.T("Audit trail")) || strings.Contains(nav, "Audit trail") {
			t.Fatalf("%s in Russian: navigation %q", p.path, nav)
		}
		b.Accessible(p.path + " in Russian")
	}
	b.WaitFor(`#trend tbody tr`)
	b.Keep("analytics in Russian")

	// Signing out ends the session at the provider: the console asks for a
	// sign-in again, and the old refresh token no longer works.
	refresh := browsertest.Eval[string](b, `JSON.parse(sessionStorage.getItem("caregrid-console-session")).refresh`)
	b.Press(`#sign-out`)
	b.WaitFor(`input[name=password]`)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"caregrid-console"}}
	resp, err := http.PostForm(is.provider.Endpoint().TokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("the refresh token after signing out: %d, want 400", resp.StatusCode)
	}
	b.NoCSPViolations()

	// A doctor signs in: nothing of the console is for them.
	const doctorID = "6d2c1b0a-0000-4000-8000-00000000d0c1"
	is.account(doctorID, "dr-ion", "doctor", "doctor-password-1", false)
	d, _ := consoleSignIn(t, is.base, "/console/audit", "dr-ion", "doctor-password-1", "")
	if !d.Has(`#denied:not([hidden])`) || d.Has(`#content:not([hidden])`) || d.Has(`#audit-events tbody tr`) {
		t.Fatal("a doctor sees the console")
	}
	d.Keep("a doctor is turned away")
	d.NoCSPViolations()
}

// TestConsoleShowsAMemberDieAndReturn: an operator watches the cluster
// page of a three-member cluster (real processes, static peers, mutual
// TLS) in Chromium: three members up; one killed with SIGKILL turns red
// (unreachable, then down once its peers drop it) while the page goes on
// updating; restarted on its address, it shows up again under a new id.
func TestConsoleShowsAMemberDieAndReturn(t *testing.T) {
	pc := startPeerCluster(t, 3)
	hash, err := identity.HashPassword("operator-password-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.db.CreateAccount(context.Background(), persistence.Account{ID: "6d2c1b0a-0000-4000-8000-0000000000e1",
		Username: "ops-ion", Role: "admin", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	b, _ := consoleSignIn(t, pc.nodes[0].base, "/console/cluster", "ops-ion", "operator-password-1", "")
	b.WaitFor(`#members tbody tr:nth-child(3)[data-status=up]`)
	if n := browsertest.Eval[int](b, `document.querySelectorAll("#members tr[data-status=up]").length`); n != 3 {
		t.Fatalf("%d members up on the page, want 3", n)
	}
	b.Keep("three members up")

	victim := pc.remoting[2]
	row := `#members tr[data-address="` + victim + `"]`
	oldID := browsertest.Eval[string](b, `document.querySelector('`+row+`').dataset.id`)
	killed := time.Now()
	pc.nodes[2].kill()
	b.WaitFor(row + `:is(.member-unreachable, .member-down)`)
	t.Logf("the killed member turned red on the page %v after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	b.Keep("a member killed")
	b.WaitFor(row + `.member-down`) // its peers dropped it; the page keeps it, down
	t.Logf("shown down %v after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	b.Accessible("cluster with a member down")
	b.Keep("a member down")

	restarted := time.Now()
	pc.nodes[2].start()
	b.WaitFor(row + `[data-status=up]`)
	t.Logf("back up on the page %v after the restart began", time.Since(restarted).Round(100*time.Millisecond))
	if id := browsertest.Eval[string](b, `document.querySelector('`+row+`').dataset.id`); id == oldID || id == "" {
		t.Fatalf("the restarted member's id %q, the killed one's %q", id, oldID)
	}
	b.Keep("the member back")
	b.NoCSPViolations()
}
