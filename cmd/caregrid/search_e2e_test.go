package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/search"
)

// TestFindingAPatientIsSeenByThePatient: a receptionist finds a patient
// registered a moment before, by a name typed in another script and by an
// IDNP prefix; the result holds demographics only; patients may not
// search; and the patient's access log shows who searched.
func TestFindingAPatientIsSeenByThePatient(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	body := clinicalPatientBody(nextIDNP())
	body["given_name"], body["family_name"] = "Ștefan", "Țurcanu"
	r := s.do("POST", "/v1/patients", doc, body)
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)
	idnp := body["idnp"].(string)

	type found struct {
		Patients []map[string]any `json:"patients"`
	}
	searchFor := func(token, q string) (int, found) {
		r := s.do("GET", "/v1/patients?q="+url.QueryEscape(q), token, nil)
		var f found
		if r.status == 200 {
			if err := json.Unmarshal(r.body, &f); err != nil {
				t.Fatal(err)
			}
		}
		return r.status, f
	}
	// The read model follows the outbox: within a second or so.
	lag := await.Until(t, "the new patient is found by name", 10*time.Second, func() bool {
		_, f := searchFor(desk, "Штефан Цуркану")
		return len(f.Patients) > 0 && f.Patients[0]["id"] == id
	})
	t.Logf("found %v after registering", lag)
	status, f := searchFor(desk, idnp[:8])
	if status != 200 || len(f.Patients) != 1 || f.Patients[0]["id"] != id {
		t.Fatalf("by IDNP prefix: %d %v", status, f)
	}
	for _, p := range f.Patients {
		for _, clinical := range []string{"allergies", "blood_type"} {
			if _, ok := p[clinical]; ok {
				t.Fatalf("a search result carries %s: %v", clinical, p)
			}
		}
	}
	expect(t, "a patient searches", s.do("GET", "/v1/patients?q=Turcanu", s.token(messages.Role_ROLE_PATIENT, id), nil), 403)
	expect(t, "a query too short", s.do("GET", "/v1/patients?q=T", desk, nil), 400)

	// The patient sees each search that listed them.
	r = s.do("GET", "/v1/patients/"+id+"/access-log?limit=500", s.token(messages.Role_ROLE_PATIENT, id), nil)
	expect(t, "access log", r, 200)
	var log struct {
		Events []struct{ Subject, Role, Action string } `json:"events"`
	}
	if err := json.Unmarshal(r.body, &log); err != nil {
		t.Fatal(err)
	}
	searches := 0
	for _, e := range log.Events {
		if e.Action == "search" {
			searches++
			if e.Role != "receptionist" || e.Subject == "" {
				t.Errorf("search entry %+v", e)
			}
		}
	}
	if searches < 2 || !strings.Contains(string(r.body), `"action":"search"`) {
		t.Fatalf("the access log shows %d searches, want at least 2: %s", searches, r.body)
	}
}

// TestReindexRebuildsTheSearch: the read model emptied (or its keys made
// by an older Fold) is rebuilt from the patients table, with a progress
// bar, and the search finds everyone again.
func TestReindexRebuildsTheSearch(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	var ids []string
	for range 3 {
		body := patientBody(nextIDNP())
		body["family_name"] = "Reindexescu"
		r := s.do("POST", "/v1/patients", desk, body)
		expect(t, "register", r, 201)
		ids = append(ids, r.json(t)["id"].(string))
	}
	count := func() int {
		var f struct {
			Patients []map[string]any `json:"patients"`
		}
		r := s.do("GET", "/v1/patients?q=Reindexescu", desk, nil)
		expect(t, "search", r, 200)
		_ = json.Unmarshal(r.body, &f)
		return len(f.Patients)
	}
	await.Until(t, "the relay indexes the three", 10*time.Second, func() bool { return count() == 3 })
	if _, err := s.db.Pool.Exec(ctx, `DELETE FROM patient_search`); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after emptying the read model, %d found", n)
	}
	var bar bytes.Buffer
	n, err := reindex(ctx, s.db, &bar)
	if err != nil || n < 3 || !strings.Contains(bar.String(), "100%") {
		t.Fatalf("reindex = %d, %v; progress %q", n, err, bar.String())
	}
	if got := count(); got != 3 {
		t.Fatalf("after reindex, %d found; want 3", got)
	}

	// A node starting on a database whose read model lacks patients (one
	// upgraded past migration 0016) backfills just those.
	if _, err := s.db.Pool.Exec(ctx, `DELETE FROM patient_search WHERE patient_id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if n, err := search.Backfill(ctx, s.db, nil); err != nil || n != 1 || count() != 3 {
		t.Fatalf("backfill = %d, %v; %d found", n, err, count())
	}
	if n, err := search.Backfill(ctx, s.db, nil); err != nil || n != 0 {
		t.Fatalf("a second backfill = %d, %v; want nothing to do", n, err)
	}
}

// TestDirectoriesListDoctorsAndClinicsByName: the doctor directory filters
// by specialty and clinic and finds a name in any spelling; the clinic
// directory likewise; anyone signed in reads them.
func TestDirectoriesListDoctorsAndClinicsByName(t *testing.T) {
	s := startTestServer(t)
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	clinic := func(name string) string {
		r := s.do("POST", "/v1/clinics", admin, map[string]any{"name": name, "address": "Chișinău", "time_zone": "Europe/Chisinau"})
		expect(t, "clinic", r, 201)
		return r.json(t)["id"].(string)
	}
	doctor := func(given, family, specialty, clinic string) string {
		r := s.do("POST", "/v1/doctors", admin, map[string]any{"given_name": given, "family_name": family, "specialty": specialty,
			"clinic_id": clinic, "time_zone": "Europe/Chisinau"})
		expect(t, "doctor", r, 201)
		return r.json(t)["id"].(string)
	}
	north, south := clinic("Spitalul de Nord"), clinic("Clinica Sud-Ţiglina")
	popescu := doctor("Ștefan", "Popescu", "Cardiology", north)
	rusu := doctor("Ana", "Rusu", "cardiology", south)
	doctor("Ion", "Ceban", "Neurology", north)
	patient := s.token(messages.Role_ROLE_PATIENT, "00000000-0000-4000-8000-00000000000a")
	names := func(path string) []string {
		t.Helper()
		r := s.do("GET", path, patient, nil)
		expect(t, path, r, 200)
		var out map[string][]map[string]any
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, list := range out {
			for _, e := range list {
				got = append(got, e["id"].(string))
			}
		}
		return got
	}
	for path, want := range map[string][]string{
		"/v1/doctors?q=" + url.QueryEscape("Попеску"):               {popescu},
		"/v1/doctors?q=stefan":                                      {popescu},
		"/v1/doctors?specialty=CARDIOLOGY":                          {popescu, rusu},
		"/v1/doctors?specialty=cardiology&clinic=" + south:          {rusu},
		"/v1/doctors?q=" + url.QueryEscape("Ana Rusu") + "&limit=1": {rusu},
		"/v1/clinics?q=" + url.QueryEscape("tiglina"):               {south},
		"/v1/clinics?q=" + url.QueryEscape("Спиталул"):              {north},
		"/v1/doctors?specialty=Dermatology":                         nil,
	} {
		if got := names(path); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	expect(t, "a bad clinic id", s.do("GET", "/v1/doctors?clinic=x", patient, nil), 400)
	expect(t, "without a token", s.do("GET", "/v1/clinics", "", nil), 401)
}
