package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"golang.org/x/oauth2/clientcredentials"
)

// TestAnalyticsFromTheReadModels: appointments booked, cancelled,
// completed and missed at two clinics show per week and per doctor, with
// utilisation against the doctor's hours and the median lead time; the
// diagnosis counts show codes recorded in at least three visits and leave
// rarer ones out; a clinic filter narrows both; the CSV holds the
// per-doctor table; and bad queries get 400.
func TestAnalyticsFromTheReadModels(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	clinic := func(name string) string {
		r := s.do("POST", "/v1/clinics", admin, map[string]any{"name": name, "address": "Chisinau", "time_zone": "Europe/Chisinau"})
		expect(t, "clinic", r, 201)
		return r.json(t)["id"].(string)
	}
	north, south := clinic("Nord"), clinic("Sud")
	doctor := func(family, clinic string) string {
		r := s.do("POST", "/v1/doctors", admin, map[string]any{"given_name": "Ana", "family_name": family, "specialty": "Cardiology",
			"clinic_id": clinic, "time_zone": "Europe/Chisinau"})
		expect(t, "doctor", r, 201)
		id := r.json(t)["id"].(string)
		expect(t, "hours", s.do("PUT", "/v1/doctors/"+id+"/availability", admin, everyDayHours()), 200) // 10 h a day
		return id
	}
	drA, drB := doctor("Arama", north), doctor("Botnaru", south)
	var patients []string
	for i := range 4 {
		base := fmt.Sprintf("200504%06d", 900+i)
		r := s.do("POST", "/v1/patients", desk, patientBody(base+string(patientCheckDigit(base))))
		expect(t, "patient", r, 201)
		patients = append(patients, r.json(t)["id"].(string))
	}
	book := func(doctor, patient string, start time.Time, minutes int) string {
		r := s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctor, "patient_id": patient,
			"start": rfc(start), "duration_minutes": minutes, "reason": "control"})
		expect(t, "book", r, 201)
		return r.json(t)["id"].(string)
	}
	day := localDay(t, 2)
	// Dr Arama: four appointments of 30 min; one cancelled, one completed
	// (with a visit), one a no-show.
	a1 := book(drA, patients[0], day, 30)
	a2 := book(drA, patients[1], day.Add(time.Hour), 30)
	a3 := book(drA, patients[2], day.Add(2*time.Hour), 30)
	book(drA, patients[3], day.Add(3*time.Hour), 30)
	// Dr Botnaru: one of 60 min.
	book(drB, patients[0], day.Add(time.Hour), 60)
	expect(t, "cancel", s.do("POST", "/v1/appointments/"+a1+"/cancel", desk, nil), 200)
	expect(t, "check in", s.do("POST", "/v1/appointments/"+a2+"/check-in", desk, nil), 200)
	expect(t, "complete", s.do("POST", "/v1/appointments/"+a2+"/complete", admin, nil), 200)
	// A no-show is recorded only after the start; the read model is what
	// the analytics count, so the test sets it there.
	if _, err := s.db.Pool.Exec(ctx, `UPDATE appointments SET status = 'no_show' WHERE id = $1`, a3); err != nil {
		t.Fatal(err)
	}
	// Visits of the patients Dr Arama treats (their appointments stand):
	// I10 three times (shown), J06 once (left out).
	drAToken := s.token(messages.Role_ROLE_DOCTOR, drA)
	for i, code := range []string{"I10", "I10", "I10", "J06"} {
		r := s.do("POST", "/v1/patients/"+patients[1+2*(i%2)]+"/visits", drAToken, map[string]any{"occurred_at": rfc(time.Now().Add(-time.Hour)),
			"reason": "control", "diagnoses": []map[string]string{{"code": code, "text": "seen"}}})
		expect(t, "visit", r, 201)
	}

	from, to := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), time.Now().UTC().AddDate(0, 0, 13).Format(time.DateOnly)
	get := func(path string, out any) {
		t.Helper()
		r := s.do("GET", path, admin, nil)
		expect(t, path, r, 200)
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatal(err)
		}
	}
	var appts struct {
		Periods []struct {
			Period                                      string
			Appointments, Completed, Cancelled, NoShows int64 `json:"-"`
		}
		Doctors []struct {
			DoctorID          string   `json:"doctor_id"`
			Appointments      int64    `json:"appointments"`
			Completed         int64    `json:"completed"`
			Cancelled         int64    `json:"cancelled"`
			NoShows           int64    `json:"no_shows"`
			BookedMinutes     float64  `json:"booked_minutes"`
			AvailableMinutes  float64  `json:"available_minutes"`
			MedianLeadSeconds *float64 `json:"median_lead_seconds"`
		}
	}
	var raw struct {
		Periods []map[string]any `json:"periods"`
	}
	get("/v1/analytics/appointments?interval=day&from="+from+"&to="+to, &raw)
	get("/v1/analytics/appointments?interval=day&from="+from+"&to="+to, &appts)
	if len(raw.Periods) != 14 {
		t.Fatalf("14 days, %d periods: %v", len(raw.Periods), raw.Periods)
	}
	var total, cancelled, completed, noShows float64
	for _, p := range raw.Periods {
		total += p["appointments"].(float64)
		cancelled += p["cancelled"].(float64)
		completed += p["completed"].(float64)
		noShows += p["no_shows"].(float64)
	}
	if total != 5 || cancelled != 1 || completed != 1 || noShows != 1 {
		t.Fatalf("periods: %v", raw.Periods)
	}
	a := appts.Doctors[0]
	if len(appts.Doctors) != 2 || a.DoctorID != drA || a.Appointments != 4 || a.Cancelled != 1 || a.Completed != 1 || a.NoShows != 1 ||
		a.BookedMinutes != 90 || a.AvailableMinutes != 14*600 || a.MedianLeadSeconds == nil || *a.MedianLeadSeconds < 24*3600 {
		t.Fatalf("per doctor: %+v", appts.Doctors)
	}
	get("/v1/analytics/appointments?interval=week&clinic="+south+"&from="+from+"&to="+to, &appts)
	if len(appts.Doctors) != 1 || appts.Doctors[0].DoctorID != drB || appts.Doctors[0].BookedMinutes != 60 {
		t.Fatalf("at the south clinic: %+v", appts.Doctors)
	}

	get("/v1/analytics/appointments?interval=month&doctor="+drB+"&from="+from+"&to="+to, &raw)
	total = 0
	for _, p := range raw.Periods {
		total += p["appointments"].(float64)
	}
	if total != 1 {
		t.Fatalf("Dr Botnaru's months: %v", raw.Periods)
	}

	var diags struct {
		Diagnoses []struct {
			Code   string
			Visits int64
		}
	}
	get("/v1/analytics/diagnoses?from="+from+"&to="+to, &diags)
	if len(diags.Diagnoses) != 1 || diags.Diagnoses[0].Code != "I10" || diags.Diagnoses[0].Visits != 3 {
		t.Fatalf("top diagnoses: %+v", diags)
	}
	get("/v1/analytics/diagnoses?clinic="+south+"&from="+from+"&to="+to, &diags)
	if len(diags.Diagnoses) != 0 {
		t.Fatalf("no visits at the south clinic: %+v", diags)
	}

	r := s.do("GET", "/v1/analytics/appointments?format=csv&from="+from+"&to="+to, admin, nil)
	expect(t, "csv", r, 200)
	records, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil || len(records) != 3 || records[1][0] != drA || records[1][4] != "4" || records[1][8] != "90" {
		t.Fatalf("csv: %q, %v", records, err)
	}
	for _, bad := range []string{"from=2026-13-01&to=2026-12-01", "from=2026-02-01&to=2026-01-01", "from=2020-01-01&to=2026-01-01",
		"from=2026-01-01&to=2026-02-01&interval=year", "from=2026-01-01&to=2026-02-01&clinic=x", "from=2026-01-01&to=2026-02-01&format=pdf"} {
		if r := s.do("GET", "/v1/analytics/appointments?"+bad, admin, nil); r.status != 400 {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
}

// TestServiceClientRegisteredByAnAdmin: an admin registers a pharmacy
// system through the API (as the console does); its secret is answered
// once, works for the client-credentials grant as the service role, and
// is never listed; the registration is in the audit trail; bad input
// gets 400.
func TestServiceClientRegisteredByAnAdmin(t *testing.T) {
	is := startIdentityServer(t, nil)
	admin := is.token(messages.Role_ROLE_ADMIN, "admin-1")
	r := is.do("POST", "/v1/clients", admin, map[string]any{"name": "Farmacia Centrală"})
	expect(t, "register a client", r, 201)
	out := r.json(t)
	id, secret := out["id"].(string), out["secret"].(string)
	if out["role"] != "service" || out["kind"] != "service" || len(secret) < 40 {
		t.Fatalf("created: %v", out)
	}
	tok, err := (&clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: is.provider.Endpoint().TokenURL}).Token(context.Background())
	if err != nil {
		t.Fatalf("the new client's credentials: %v", err)
	}
	r = is.do("GET", "/v1/me", tok.AccessToken, nil)
	expect(t, "the client's token", r, 200)
	if r.json(t)["role"] != "service" {
		t.Fatalf("me: %s", r.body)
	}
	r = is.do("GET", "/v1/clients", admin, nil)
	expect(t, "list", r, 200)
	if !strings.Contains(string(r.body), id) || strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), `"secret"`) {
		t.Fatalf("the list: %s", r.body)
	}
	// Audited with the write, then chained.
	await.Until(t, "the registration in the audit trail", 30*time.Second, func() bool {
		var n int
		err := is.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = 'client-create' AND detail = 'Farmacia Centrală'`).Scan(&n)
		return err == nil && n == 1
	})
	for _, bad := range []struct {
		body   map[string]any
		status int
	}{{map[string]any{"name": ""}, 422}, {map[string]any{"name": "x", "role": "admin"}, 422}, {map[string]any{"name": "x", "secret": "mine"}, 400},
		{map[string]any{"name": "a\u0000b"}, 400}} {
		if r := is.do("POST", "/v1/clients", admin, bad.body); r.status != bad.status || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%v: %d %s", bad.body, r.status, r.body)
		}
	}
}
