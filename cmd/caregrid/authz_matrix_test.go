package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/persistence"
	"github.com/google/uuid"
	"golang.org/x/oauth2/clientcredentials"
)

// The authorization matrix: for every route in the OpenAPI document, for
// every caller, on the caller's own records and on someone else's, the
// status the API must answer. Tokens come from the real provider (client
// credentials for accounts whose ids are the records': a patient's
// account is the patient). A documented route missing here fails the test,
// and so does a row for a route that is not documented.
//
// Columns: anonymous, patient, doctor, receptionist, admin. Each cell is
// {own, other}: the patient's own record vs another patient's; the
// doctor's own calendar and patient (with an appointment) vs another
// doctor's; staff without own records see both alike. A 409 marks an
// allowed action the appointment's state refuses (a no-show before the
// start): the access check has passed.
type cell [2]int

var matrix = map[string][5]cell{
	"GET /livez":                           {{200, 200}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /readyz":                          {{200, 200}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /metrics":                         {{200, 200}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /openapi.json":                    {{200, 200}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /.well-known/caregrid-audit-keys": {{200, 200}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},

	"POST /v1/patients":                  {{401, 401}, {403, 403}, {201, 201}, {201, 201}, {201, 201}},
	"GET /v1/patients":                   {{401, 401}, {403, 403}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/patients/{id}":              {{401, 401}, {200, 403}, {200, 403}, {200, 200}, {200, 200}},
	"PATCH /v1/patients/{id}":            {{401, 401}, {200, 403}, {200, 403}, {200, 200}, {200, 200}},
	"GET /v1/patients/{id}/access-log":   {{401, 401}, {200, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/patients/{id}/appointments": {{401, 401}, {200, 403}, {200, 403}, {200, 200}, {200, 200}},

	"POST /v1/patients/{id}/visits":                       {{401, 401}, {403, 403}, {201, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/visits":                        {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"POST /v1/patients/{id}/vaccinations":                 {{401, 401}, {403, 403}, {201, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/vaccinations":                  {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/clinical-history":              {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/timeline":                      {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"POST /v1/patients/{id}/documents":                    {{401, 401}, {403, 403}, {201, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/documents":                     {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/documents/{document}":          {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/prescriptions":                 {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"POST /v1/prescriptions":                              {{401, 401}, {403, 403}, {201, 403}, {403, 403}, {403, 403}},
	"GET /v1/prescriptions/{id}":                          {{401, 401}, {200, 403}, {200, 403}, {403, 403}, {403, 403}},
	"POST /v1/prescriptions/{id}/dispense":                {{401, 401}, {403, 403}, {200, 403}, {403, 403}, {403, 403}},
	"POST /v1/prescriptions/{id}/cancel":                  {{401, 401}, {403, 403}, {200, 403}, {403, 403}, {403, 403}},
	"GET /v1/patients/{id}/care-team":                     {{401, 401}, {200, 403}, {200, 403}, {200, 200}, {200, 200}},
	"GET /v1/patients/{id}/access-grants":                 {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {200, 200}},
	"POST /v1/patients/{id}/emergency-access":             {{401, 401}, {403, 403}, {201, 201}, {403, 403}, {403, 403}},
	"GET /v1/reviews":                                     {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/reviews/{id}":                               {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/patients/{id}/restrictions":                  {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {200, 200}},
	"POST /v1/patients/{id}/restrictions":                 {{401, 401}, {201, 403}, {403, 403}, {201, 201}, {201, 201}},
	"DELETE /v1/patients/{id}/restrictions/{restriction}": {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {200, 200}},
	"PUT /v1/patients/{id}/care-team/{doctor}":            {{401, 401}, {403, 403}, {403, 403}, {200, 200}, {200, 200}},
	"POST /v1/patients/{id}/exports":                      {{401, 401}, {202, 403}, {403, 403}, {202, 202}, {403, 403}},
	"GET /v1/patients/{id}/exports/{export}":              {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {403, 403}},
	// The link is the credential: without its token, nobody (see TestExportAndErasure).
	"GET /v1/exports/{export}/download":             {{404, 404}, {404, 404}, {404, 404}, {404, 404}, {404, 404}},
	"POST /v1/patients/{id}/erasure-requests":       {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {403, 403}},
	"GET /v1/patients/{id}/erasure-requests/latest": {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {403, 403}},
	"GET /v1/erasure-requests":                      {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/erasure-requests/{id}":                {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"PUT /v1/patients/{id}/legal-hold":              {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"DELETE /v1/patients/{id}/legal-hold":           {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {204, 204}},
	"DELETE /v1/patients/{id}/care-team/{doctor}":   {{401, 401}, {403, 403}, {403, 403}, {200, 200}, {200, 200}},

	"GET /v1/patients/{id}/notification-preferences": {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {200, 200}},
	"PUT /v1/patients/{id}/notification-preferences": {{401, 401}, {200, 403}, {403, 403}, {200, 200}, {200, 200}},
	"GET /v1/patients/{id}/notifications":            {{401, 401}, {200, 403}, {200, 403}, {200, 200}, {200, 200}},
	"POST /v1/me/push-subscriptions":                 {{401, 401}, {201, 201}, {403, 403}, {403, 403}, {403, 403}},
	// Own: a subscription of the caller's; other: another patient's (404: none of the caller's).
	"DELETE /v1/me/push-subscriptions/{id}": {{401, 401}, {204, 404}, {403, 403}, {403, 403}, {403, 403}},
	"GET /v1/push/vapid-public-key":         {{200, 200}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/notifications":                 {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/notifications/{id}/retry":     {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/clinics/{id}/reminders":        {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"PUT /v1/clinics/{id}/reminders":        {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},

	"POST /v1/clinics":       {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {201, 201}},
	"GET /v1/clinics/{id}":   {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/clinics":        {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"PATCH /v1/clinics/{id}": {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},

	"POST /v1/doctors":                  {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {201, 201}},
	"GET /v1/doctors/{id}":              {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/doctors":                   {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"PATCH /v1/doctors/{id}":            {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"PUT /v1/doctors/{id}/availability": {{401, 401}, {403, 403}, {200, 403}, {200, 200}, {200, 200}},
	"GET /v1/doctors/{id}/availability": {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/doctors/{id}/slots":        {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/doctors/{id}/appointments": {{401, 401}, {403, 403}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/slots":                     {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},

	"POST /v1/appointments":                 {{401, 401}, {201, 403}, {201, 201}, {201, 201}, {201, 201}},
	"GET /v1/appointments/{id}":             {{401, 401}, {200, 403}, {200, 403}, {200, 200}, {200, 200}},
	"GET /v1/appointments":                  {{401, 401}, {403, 403}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/prescriptions":                 {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {403, 403}},
	"POST /v1/appointments/{id}/cancel":     {{401, 401}, {200, 403}, {200, 200}, {200, 200}, {200, 200}},
	"POST /v1/appointments/{id}/reschedule": {{401, 401}, {200, 403}, {200, 200}, {200, 200}, {200, 200}},
	"POST /v1/appointments/{id}/check-in":   {{401, 401}, {403, 403}, {200, 403}, {200, 200}, {200, 200}},
	"POST /v1/appointments/{id}/complete":   {{401, 401}, {403, 403}, {200, 403}, {403, 403}, {200, 200}},
	"POST /v1/appointments/{id}/no-show":    {{401, 401}, {403, 403}, {409, 403}, {409, 409}, {409, 409}},

	"GET /v1/ops/cluster":               {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/audit-events":              {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/audit-verifications":       {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/audit-verifications":      {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {202, 202}},
	"GET /v1/analytics/appointments":    {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/analytics/diagnoses":       {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/clients":                   {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/clients":                  {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {201, 201}},
	"GET /v1/me":                        {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"GET /v1/me/sessions":               {{401, 401}, {200, 200}, {200, 200}, {200, 200}, {200, 200}},
	"POST /v1/accounts":                 {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {201, 201}},
	"GET /v1/accounts/{id}":             {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"GET /v1/accounts":                  {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"PATCH /v1/accounts/{id}":           {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/accounts/{id}/unlock":     {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/accounts/{id}/disable":    {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/accounts/{id}/enable":     {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/accounts/{id}/reset-totp": {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"POST /v1/accounts/{id}/send-reset": {{401, 401}, {403, 403}, {403, 403}, {403, 403}, {200, 200}},
	"DELETE /v1/me/sessions/{id}":       {{401, 401}, {204, 404}, {204, 404}, {204, 404}, {204, 404}},
}

var callerNames = [5]string{"anonymous", "patient", "doctor", "receptionist", "admin"}

// matrixFixture is the world the matrix runs in.
type matrixFixture struct {
	is                *identityServer
	t                 *testing.T
	clinic            string
	doctors, patients [2]string // own, other
	appointments      [2]string // own patient with own doctor; other patient with other doctor
	slot              int       // next free slot index (see nextStart)
	clients           map[string]clientcredentials.Config
	accounts          [5]string
	tokens            [5]string
	desk              string // a receptionist token for setting up
}

// nextStart is a fresh 15-minute slot, never used before in this test.
func (f *matrixFixture) nextStart() time.Time {
	day, n := 1+f.slot/40, f.slot%40
	f.slot++
	return localDay(f.t, day).Add(-2*time.Hour + time.Duration(n)*15*time.Minute) // 08:00 + n slots
}

// serviceToken registers a client-credentials client acting as account id
// with role, and returns a token from the provider's token endpoint.
func (f *matrixFixture) serviceToken(id, role string) string {
	f.t.Helper()
	ctx := context.Background()
	cfg, ok := f.clients[id]
	if !ok {
		secret := uuid.NewString()
		h := hashSecret(secret)
		c := persistence.Client{ID: "svc-" + id, Name: role + " " + id, Kind: "service", SecretHash: h}
		if err := f.is.db.CreateServiceClient(ctx, persistence.Account{ID: id, Username: "svc-" + id, Role: role}, c); err != nil {
			f.t.Fatal(err)
		}
		cfg = clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: f.is.provider.Endpoint().TokenURL}
		f.clients[id] = cfg
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		f.t.Fatalf("token for %s %s: %v", role, id, err)
	}
	return tok.AccessToken
}

// document uploads a document for the side's patient as the side's doctor.
func (f *matrixFixture) document(side int) string {
	f.t.Helper()
	b, ctype := upload(f.t, "fixture", []byte("%PDF-1.7\nfixture\n"), "application/pdf")
	r := f.is.do("POST", "/v1/patients/"+f.patients[side]+"/documents", f.serviceToken(f.doctors[side], "doctor"), b, "Content-Type", ctype)
	expect(f.t, "fixture document", r, 201)
	return r.json(f.t)["id"].(string)
}

// prescribe writes a prescription for the side's patient as the side's
// doctor (who has an appointment with them).
func (f *matrixFixture) prescribe(side int) string {
	f.t.Helper()
	tok := f.serviceToken(f.doctors[side], "doctor")
	r := f.is.do("POST", "/v1/prescriptions", tok, prescriptionBody(f.patients[side], "N02BE01", "Paracetamol"))
	expect(f.t, "fixture prescription", r, 201)
	return r.json(f.t)["id"].(string)
}

func (f *matrixFixture) book(doctor, patient string) string {
	f.t.Helper()
	r := f.is.do("POST", "/v1/appointments", f.desk, map[string]any{"doctor_id": doctor, "patient_id": patient,
		"start": rfc(f.nextStart()), "duration_minutes": 15, "reason": "control"})
	expect(f.t, "fixture booking", r, 201)
	return r.json(f.t)["id"].(string)
}

func (f *matrixFixture) etag(path string) string {
	f.t.Helper()
	r := f.is.do("GET", path, f.tokens[4], nil)
	expect(f.t, "fixture read "+path, r, 200)
	return r.header.Get("ETag")
}

var idnpSeq = 100

func (f *matrixFixture) register() string {
	f.t.Helper()
	r := f.is.do("POST", "/v1/patients", f.desk, patientBody(nextIDNP()))
	expect(f.t, "fixture patient", r, 201)
	return r.json(f.t)["id"].(string)
}

func nextIDNP() string {
	idnpSeq++
	base := fmt.Sprintf("200504%06d", idnpSeq)
	return base + string(patientCheckDigit(base))
}

func TestAuthorizationMatrix(t *testing.T) {
	is := startIdentityServer(t, func(c *identity.Config) {
		c.Mailer = identity.LogMailer{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	})
	f := &matrixFixture{is: is, t: t, clients: map[string]clientcredentials.Config{}}
	// Set up as admin and receptionist through the provider too.
	f.accounts[3], f.accounts[4] = uuid.NewString(), uuid.NewString()
	f.tokens[3], f.tokens[4] = f.serviceToken(f.accounts[3], "receptionist"), f.serviceToken(f.accounts[4], "admin")
	f.desk = f.tokens[3]
	s := is.testServer
	r := s.do("POST", "/v1/clinics", f.tokens[4], map[string]any{"name": "Clinica", "address": "Chisinau", "time_zone": "Europe/Chisinau"})
	expect(t, "clinic", r, 201)
	f.clinic = r.json(t)["id"].(string)
	for i := range f.doctors {
		r := s.do("POST", "/v1/doctors", f.tokens[4], map[string]any{"given_name": "Ana", "family_name": fmt.Sprint("Doctor", i),
			"specialty": "Cardiology", "clinic_id": f.clinic, "time_zone": "Europe/Chisinau"})
		expect(t, "doctor", r, 201)
		f.doctors[i] = r.json(t)["id"].(string)
		expect(t, "hours", s.do("PUT", "/v1/doctors/"+f.doctors[i]+"/availability", f.tokens[4], everyDayHours()), 200)
		f.patients[i] = f.register()
		f.appointments[i] = f.book(f.doctors[i], f.patients[i])
	}
	f.accounts[1], f.accounts[2] = f.patients[0], f.doctors[0]
	f.tokens[1], f.tokens[2] = f.serviceToken(f.patients[0], "patient"), f.serviceToken(f.doctors[0], "doctor")

	// The routes come from the published document, not from the table.
	r = s.do("GET", "/openapi.json", "", nil)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for path, ops := range doc.Paths {
		for method := range ops {
			routes = append(routes, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(routes)
	for key := range matrix {
		found := false
		for _, r := range routes {
			found = found || r == key
		}
		if !found {
			t.Errorf("the matrix has %s, which openapi.json does not document", key)
		}
	}
	for _, route := range routes {
		want, ok := matrix[route]
		if !ok {
			t.Errorf("%s is documented but has no row in the authorization matrix", route)
			continue
		}
		for who := range 5 {
			for side, name := range []string{"own", "other"} {
				method, path, body, headers := f.request(route, who, side == 0)
				got := s.do(method, path, f.tokens[who], body, headers...)
				if got.status != want[who][side] {
					t.Errorf("%s as %s on %s: %d, want %d (%s)", route, callerNames[who], name, got.status, want[who][side], truncateBody(got.body))
				}
			}
		}
	}
}

// awaitNoTrailCheck waits until no check of the audit trail is running.
func (f *matrixFixture) awaitNoTrailCheck() {
	f.t.Helper()
	await.Until(f.t, "the running check of the audit trail to end", 30*time.Second, func() bool {
		var running bool
		err := f.is.db.Pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM audit_verifications WHERE status = 'running')`).Scan(&running)
		return err == nil && !running
	})
}

func truncateBody(b []byte) string {
	if len(b) > 160 {
		return string(b[:160]) + "..."
	}
	return string(b)
}

var pathParam = regexp.MustCompile(`\{id\}`)

// request builds the call for one cell: own picks the caller's records.
func (f *matrixFixture) request(route string, who int, own bool) (method, path string, body any, headers []string) {
	method, tmpl, _ := strings.Cut(route, " ")
	side := 1
	if own {
		side = 0
	}
	from, to := url.QueryEscape(rfc(localDay(f.t, 1).Add(-3*time.Hour))), url.QueryEscape(rfc(localDay(f.t, 3)))
	id := ""
	switch {
	case strings.HasPrefix(tmpl, "/v1/patients/{id}"):
		id = f.patients[side]
	case strings.HasPrefix(tmpl, "/v1/doctors/{id}"):
		id = f.doctors[side]
	case strings.HasPrefix(tmpl, "/v1/clinics/{id}"):
		id = f.clinic
	case tmpl == "/v1/notifications/{id}/retry":
		id = f.deadNotification() // each cell a fresh one: a retry makes it pending
	case tmpl == "/v1/me/push-subscriptions/{id}":
		// Subscribed by the caller (own) or by the other patient.
		subscriber := f.serviceToken(f.patients[1], "patient")
		if own && who == 1 {
			subscriber = f.tokens[1]
		}
		r := f.is.do("POST", "/v1/me/push-subscriptions", subscriber, pushSubscriptionBody(f.t))
		expect(f.t, "fixture push subscription", r, 201)
		id = r.json(f.t)["id"].(string)
	case tmpl == "/v1/appointments/{id}":
		id = f.appointments[side]
	case strings.HasPrefix(tmpl, "/v1/appointments/{id}/"):
		// Transitions change the appointment: each cell gets a fresh one.
		id = f.book(f.doctors[side], f.patients[side])
		if strings.HasSuffix(tmpl, "/complete") {
			expect(f.t, "fixture check-in", f.is.do("POST", "/v1/appointments/"+id+"/check-in", f.desk, nil), 200)
		}
	case strings.HasPrefix(tmpl, "/v1/prescriptions/{id}"):
		// Each cell gets a fresh prescription by the side's doctor for the side's patient.
		id = f.prescribe(side)
	case tmpl == "/v1/me/sessions/{id}":
		id = f.sessionToEnd(who, own)
	case tmpl == "/v1/reviews/{id}":
		id = f.emergencyAccess(side) // each cell a fresh one: a review is once
	case tmpl == "/v1/erasure-requests/{id}":
		id = f.erasureOfNewPatient() // approving it erases a patient of its own
	case tmpl == "/v1/exports/{export}/download":
		path = strings.ReplaceAll(tmpl, "{export}", f.export(side))
		return method, path + "?token=" + strings.Repeat("A", 43), nil, nil
	case route == "PATCH /v1/accounts/{id}":
		id = f.freshAccount() // a staff account of no record: its profile may be set
	case tmpl == "/v1/accounts/{id}":
		id = f.accounts[1+(who%4)] // another caller's account
		if own && who > 0 {
			id = f.accounts[who]
		}
	case strings.HasPrefix(tmpl, "/v1/accounts/{id}/"):
		// Actions change the account (disable would lock the caller out): a fresh one per cell.
		id = f.freshAccount()
	}
	path = strings.ReplaceAll(pathParam.ReplaceAllString(tmpl, id), "{doctor}", f.doctors[side])
	if strings.Contains(tmpl, "{restriction}") {
		path = strings.ReplaceAll(path, "{restriction}", f.restriction(side))
	}
	if strings.Contains(tmpl, "{export}") {
		path = strings.ReplaceAll(path, "{export}", f.export(side))
	}
	if strings.HasPrefix(tmpl, "/v1/patients/{id}/erasure-requests") {
		// One is open for the patient: asking again answers it (200).
		if r := f.is.do("POST", "/v1/patients/"+id+"/erasure-requests", f.desk, nil); r.status != 200 && r.status != 201 {
			f.t.Fatalf("fixture erasure request: %d %s", r.status, r.body)
		}
	}
	if route == "POST /v1/patients/{id}/exports" {
		f.awaitNoExportInMaking(id)
	}
	if route == "POST /v1/audit-verifications" {
		f.awaitNoTrailCheck() // one check at a time: a second is 409
	}
	if strings.Contains(tmpl, "{document}") {
		path = strings.ReplaceAll(path, "{document}", f.document(side))
	}
	switch route {
	case "POST /v1/patients":
		body = patientBody(nextIDNP())
	case "PATCH /v1/patients/{id}":
		body, headers = map[string]any{"email": fmt.Sprintf("p%d@example.md", f.slot)}, []string{"If-Match", f.etag(path)}
	case "POST /v1/clinics":
		body = map[string]any{"name": "Another", "address": "Balti", "time_zone": "Europe/Chisinau"}
	case "POST /v1/doctors":
		body = map[string]any{"given_name": "Ion", "family_name": "Nou", "specialty": "Neurology", "clinic_id": f.clinic, "time_zone": "Europe/Chisinau"}
	case "PATCH /v1/doctors/{id}":
		body, headers = map[string]any{"phone": "+37360000001"}, []string{"If-Match", f.etag(path), "Content-Type", "application/merge-patch+json"}
	case "PUT /v1/doctors/{id}/availability":
		body = everyDayHours()
	case "GET /v1/doctors/{id}/slots", "GET /v1/doctors/{id}/appointments":
		path += "?from=" + from + "&to=" + to
	case "GET /v1/slots":
		path += "?specialty=cardiology&from=" + from + "&to=" + to
	case "GET /v1/patients":
		path += "?q=Ciobanu"
	case "GET /v1/analytics/appointments", "GET /v1/analytics/diagnoses":
		path += "?from=2026-01-01&to=2026-04-01"
	case "POST /v1/clients":
		body = map[string]any{"name": "Farmacia Matrix"}
	case "POST /v1/appointments":
		patient := f.patients[side]
		body = map[string]any{"doctor_id": f.doctors[side], "patient_id": patient, "start": rfc(f.nextStart()), "duration_minutes": 15, "reason": "matrix"}
	case "POST /v1/patients/{id}/visits":
		body = map[string]any{"occurred_at": rfc(time.Now().Add(-time.Hour)), "reason": "control",
			"diagnoses": []map[string]string{{"code": "I10", "text": "essential hypertension"}}}
	case "POST /v1/patients/{id}/vaccinations":
		body = map[string]any{"atc_code": "J07BB02", "vaccine_name": "Influenza, inactivated", "date": time.Now().Format(time.DateOnly), "dose_number": 1}
	case "POST /v1/patients/{id}/documents":
		b, ctype := upload(f.t, "matrix", []byte("%PDF-1.7\nmatrix\n"), "application/pdf")
		body, headers = b, []string{"Content-Type", ctype}
	case "POST /v1/prescriptions":
		body = prescriptionBody(f.patients[side], "N02BE01", "Paracetamol")
	case "POST /v1/prescriptions/{id}/dispense":
		body = map[string]string{"quantity": "10 tablets"}
	case "POST /v1/prescriptions/{id}/cancel":
		body = map[string]string{"reason": "matrix"}
	case "POST /v1/patients/{id}/emergency-access":
		body = map[string]any{"reason": "unconscious in the emergency room"}
	case "POST /v1/reviews/{id}", "POST /v1/erasure-requests/{id}":
		body = map[string]any{"decision": "approve"}
	case "PUT /v1/patients/{id}/legal-hold":
		body = map[string]any{"reason": "court order 12/2026"}
	case "POST /v1/patients/{id}/restrictions":
		body = map[string]any{"kind": "block-doctor", "target_id": f.spareDoctor()}
	case "PATCH /v1/clinics/{id}":
		body, headers = map[string]any{"address": fmt.Sprintf("Chisinau, str. %d", f.slot)}, []string{"If-Match", f.etag(path), "Content-Type", "application/merge-patch+json"}
	case "PATCH /v1/accounts/{id}":
		body, headers = map[string]any{"display_name": "Maria Desk", "clinic_id": f.clinic}, []string{"Content-Type", "application/merge-patch+json"}
	case "GET /v1/appointments":
		path += "?clinic=" + f.clinic + "&date=" + localDay(f.t, 1).Format(time.DateOnly)
	case "GET /v1/prescriptions":
		path += "?status=active&patient_idnp=" + nextIDNP()
	case "GET /v1/accounts":
		path += "?role=receptionist"
	case "POST /v1/accounts":
		body = map[string]any{"username": "new-" + uuid.NewString()[:8], "role": "receptionist", "email": "new@hospital.example"}
	case "POST /v1/appointments/{id}/reschedule":
		body = map[string]any{"start": rfc(f.nextStart())}
	case "PUT /v1/patients/{id}/notification-preferences":
		body = map[string]any{"language": "ro", "channels": []string{"email"}, "reminders": false,
			"quiet_hours": map[string]string{"start": "21:00", "end": "09:00"}, "time_zone": "Europe/Chisinau"}
	case "POST /v1/me/push-subscriptions":
		body = pushSubscriptionBody(f.t)
	case "PUT /v1/clinics/{id}/reminders":
		body = map[string]any{"minutes_before": []int{1440, 60}}
	}
	return method, path, body, headers
}

// spareDoctor is a new doctor, unrelated to the fixture's patients: one
// a cell may block without changing any other cell's answer.
func (f *matrixFixture) spareDoctor() string {
	f.t.Helper()
	r := f.is.do("POST", "/v1/doctors", f.tokens[4], map[string]any{"given_name": "Ana", "family_name": "Rezerva",
		"specialty": "Dermatology", "clinic_id": f.clinic, "time_zone": "Europe/Chisinau"})
	expect(f.t, "spare doctor", r, 201)
	return r.json(f.t)["id"].(string)
}

// restriction is a live restriction of the side's patient, made by the
// desk, for a cell that lifts it.
func (f *matrixFixture) restriction(side int) string {
	f.t.Helper()
	doctor := f.spareDoctor()
	r := f.is.do("POST", "/v1/patients/"+f.patients[side]+"/restrictions", f.desk, map[string]any{"kind": "block-doctor", "target_id": doctor})
	expect(f.t, "fixture restriction", r, 201)
	for _, x := range r.json(f.t)["restrictions"].([]any) {
		if x := x.(map[string]any); x["target_id"] == doctor {
			return x["id"].(string)
		}
	}
	f.t.Fatal("the new restriction is not listed")
	return ""
}

// emergencyAccess is a fresh emergency access to the side's patient by
// the other side's doctor, for a cell that reviews it.
func (f *matrixFixture) emergencyAccess(side int) string {
	f.t.Helper()
	r := f.is.do("POST", "/v1/patients/"+f.patients[side]+"/emergency-access", f.serviceToken(f.doctors[1-side], "doctor"),
		map[string]any{"reason": "collapsed at the pharmacy"})
	expect(f.t, "fixture emergency access", r, 201)
	return r.json(f.t)["id"].(string)
}

// erasureOfNewPatient is a pending erasure request of a new patient, for
// a cell that reviews it.
func (f *matrixFixture) erasureOfNewPatient() string {
	f.t.Helper()
	r := f.is.do("POST", "/v1/patients/"+f.register()+"/erasure-requests", f.desk, nil)
	expect(f.t, "fixture erasure request", r, 201)
	return r.json(f.t)["id"].(string)
}

// export is an export of the side's patient asked for by the desk (the
// receptionist caller), once none is in the making.
func (f *matrixFixture) export(side int) string {
	f.t.Helper()
	f.awaitNoExportInMaking(f.patients[side])
	r := f.is.do("POST", "/v1/patients/"+f.patients[side]+"/exports", f.desk, nil)
	expect(f.t, "fixture export", r, 202)
	return r.json(f.t)["id"].(string)
}

// awaitNoExportInMaking waits until the patient has no export queued or
// being built: a patient has one in the making at a time.
func (f *matrixFixture) awaitNoExportInMaking(patientID string) {
	f.t.Helper()
	await.Until(f.t, "the patient's export to be made", 30*time.Second, func() bool {
		var n int
		err := f.is.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM patient_exports WHERE patient_id = $1 AND state IN ('queued', 'building')`, patientID).Scan(&n)
		return err == nil && n == 0
	})
}

// freshAccount is a new receptionist account, for a cell that changes it.
func (f *matrixFixture) freshAccount() string {
	f.t.Helper()
	id := uuid.NewString()
	if err := f.is.db.CreateAccount(context.Background(), persistence.Account{ID: id, Username: "acct-" + id[:8], Email: id[:8] + "@hospital.example", Role: "receptionist"}); err != nil {
		f.t.Fatal(err)
	}
	return id
}

// sessionToEnd is, for own, another live session of the caller's own
// account (ending it must not end the session the request comes with);
// otherwise a session of someone else's account.
func (f *matrixFixture) sessionToEnd(who int, own bool) string {
	f.t.Helper()
	if who == 0 {
		return uuid.NewString()
	}
	account := f.accounts[who]
	if !own {
		account = f.accounts[1+(who%4)] // the next caller's account
	}
	role := callerNames[who]
	if !own {
		role = callerNames[1+(who%4)]
	}
	tok := f.serviceToken(account, role)
	r := f.is.do("GET", "/v1/me", tok, nil)
	expect(f.t, "fixture session", r, 200)
	return r.json(f.t)["session_id"].(string)
}

func everyDayHours() map[string]any {
	var weekly []map[string]any
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"} {
		weekly = append(weekly, map[string]any{"weekday": d, "ranges": []map[string]string{{"start": "08:00", "end": "18:00"}}})
	}
	return map[string]any{"slot_minutes": 15, "weekly": weekly}
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func patientCheckDigit(twelve string) byte { return patient.CheckDigit(twelve) }

// pushSubscriptionBody is a browser's PushSubscription.toJSON() with a
// fresh key, to an endpoint on loopback where nothing listens.
func pushSubscriptionBody(t *testing.T) map[string]any {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	return map[string]any{"endpoint": "http://127.0.0.1:9/push/" + uuid.NewString(),
		"keys": map[string]string{"p256dh": base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()), "auth": base64.RawURLEncoding.EncodeToString(secret)}}
}

// deadNotification is a dead account mail, for a cell that retries it.
func (f *matrixFixture) deadNotification() string {
	f.t.Helper()
	id := uuid.NewString()
	if _, err := f.is.db.Pool.Exec(context.Background(), `INSERT INTO notifications (id, dedup_key, event, channel, language, about,
		state, attempts, next_attempt_at, last_error, provider_id, created_at) VALUES ($1, $2, 'account-mail', 'email', '', '', 'dead', 8, now(), 'relay refused', '', now())`, id, "matrix:"+id); err != nil {
		f.t.Fatal(err)
	}
	return id
}
