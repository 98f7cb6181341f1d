package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
)

func TestHTTPVisitsAreClinicalRecordsSealedPerPatient(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	otherDoc := s.token(messages.Role_ROLE_DOCTOR, workingDoctor(t, s))
	r := s.do("POST", "/v1/patients", desk, patientBody("2005042129809"))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)
	self := s.token(messages.Role_ROLE_PATIENT, id)
	visits := "/v1/patients/" + id + "/visits"
	const notes = "Wheezing after exercise.\nPeak flow 320 L/min."
	body := map[string]any{"occurred_at": rfc(time.Now().Add(-30 * time.Minute)), "reason": "shortness of breath", "notes": notes,
		"diagnoses": []map[string]string{{"code": "j45.0", "text": "allergic asthma", "onset": "2026-01-15"}, {"code": "J30.1", "text": "hay fever", "status": "resolved"}}}

	expect(t, "a doctor without an appointment records a visit", s.do("POST", visits, doc, body), 403)
	book := map[string]any{"doctor_id": doctorID, "patient_id": id, "start": rfc(localDay(t, 1)), "duration_minutes": 15, "reason": "control"}
	expect(t, "book", s.do("POST", "/v1/appointments", desk, book), 201)

	bad := map[string]any{"occurred_at": "yesterday", "reason": "", "diagnoses": []map[string]string{{"code": "ASTHMA", "text": "x"}}}
	r = s.do("POST", visits, doc, bad)
	expect(t, "a malformed visit", r, 422)
	if got := problemFields(t, r); got != "/problems/validation diagnoses[0].code,occurred_at,reason" {
		t.Fatalf("problem = %s", got)
	}
	expect(t, "a receptionist with a malformed visit learns only that she may not", s.do("POST", visits, desk, bad), 403)

	r = s.do("POST", visits, doc, body, "Idempotency-Key", "visit-1")
	expect(t, "record a visit", r, 201)
	v := r.json(t)
	visitID := v["id"].(string)
	diags, _ := v["diagnoses"].([]any)
	if v["doctor_id"] != doctorID || v["notes"] != notes || len(diags) != 2 || diags[0].(map[string]any)["code"] != "J45.0" ||
		diags[0].(map[string]any)["status"] != "active" || diags[1].(map[string]any)["status"] != "resolved" {
		t.Fatalf("visit = %s", r.body)
	}
	if replay := s.do("POST", visits, doc, body, "Idempotency-Key", "visit-1"); replay.status != 201 || replay.json(t)["id"] != visitID ||
		replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %s", replay.status, replay.body)
	}
	other := map[string]any{"occurred_at": rfc(time.Now().Add(-time.Minute)), "reason": "follow-up"}
	expect(t, "the key with another visit", s.do("POST", visits, doc, other, "Idempotency-Key", "visit-1"), 422)
	expect(t, "a second visit", s.do("POST", visits, doc, other), 201)

	// The patient and the treating doctor read them, newest first and paged;
	// receptionists, admins and other doctors do not.
	r = s.do("GET", visits+"?limit=1", self, nil)
	expect(t, "the patient's visits", r, 200)
	var page struct {
		Visits []struct {
			ID, Notes, Reason string
		} `json:"visits"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Visits) != 1 || page.Visits[0].Reason != "follow-up" || page.NextCursor == "" {
		t.Fatalf("page 1 = %s", r.body)
	}
	r = s.do("GET", visits+"?limit=1&cursor="+page.NextCursor, doc, nil)
	expect(t, "the doctor's page 2", r, 200)
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Visits) != 1 || page.Visits[0].ID != visitID || page.Visits[0].Notes != notes {
		t.Fatalf("page 2 = %s", r.body)
	}
	for name, tok := range map[string]string{"receptionist": desk, "admin": s.token(messages.Role_ROLE_ADMIN, "admin-1"), "another doctor": otherDoc,
		"another patient": s.token(messages.Role_ROLE_PATIENT, "22222222-2222-4222-8222-222222222222")} {
		expect(t, "visits read by "+name, s.do("GET", visits, tok, nil), 403)
	}

	// The timeline merges them with the appointment, newest first, and pages.
	type entry struct{ Kind, Summary string }
	var all []entry
	cursor := ""
	for range 10 {
		r = s.do("GET", "/v1/patients/"+id+"/timeline?limit=2&cursor="+cursor, self, nil)
		expect(t, "timeline page", r, 200)
		var tl struct {
			Entries    []entry `json:"entries"`
			NextCursor string  `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &tl); err != nil {
			t.Fatal(err)
		}
		all = append(all, tl.Entries...)
		if cursor = tl.NextCursor; cursor == "" {
			break
		}
	}
	var got []string
	for _, e := range all {
		got = append(got, e.Kind+": "+e.Summary)
	}
	if len(got) != 5 || got[0] != "appointment: appointment booked" || got[1] != "visit: follow-up" || got[2] != "visit: shortness of breath" ||
		!(got[3] == "diagnosis: J45.0 allergic asthma" && got[4] == "diagnosis: J30.1 hay fever" || got[4] == "diagnosis: J45.0 allergic asthma" && got[3] == "diagnosis: J30.1 hay fever") {
		t.Fatalf("timeline = %q", got)
	}
	expect(t, "the timeline read by a receptionist", s.do("GET", "/v1/patients/"+id+"/timeline", desk, nil), 403)

	// At rest: no clinical text in the clear; the data key is stored wrapped.
	var reason, stored, text, wrapped []byte
	if err := s.db.Pool.QueryRow(ctx, `SELECT reason_sealed, notes_sealed FROM visits WHERE id = $1`, visitID).Scan(&reason, &stored); err != nil {
		t.Fatal(err)
	}
	// The diagnosis code is sealed too: the plain column is empty.
	var plainCode string
	var code []byte
	if err := s.db.Pool.QueryRow(ctx, `SELECT text_sealed, code, code_sealed FROM diagnoses WHERE visit_id = $1 AND position = 0`, visitID).Scan(&text, &plainCode, &code); err != nil {
		t.Fatal(err)
	}
	if plainCode != "" || bytes.Contains(code, []byte("J45")) || bytes.Contains(code, []byte("J30")) || len(code) == 0 {
		t.Errorf("the diagnosis code is stored as %q, sealed %q", plainCode, code)
	}
	if err := s.db.Pool.QueryRow(ctx, `SELECT wrapped FROM patient_keys WHERE patient_id = $1`, id).Scan(&wrapped); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"reason": reason, "notes": stored, "diagnosis": text} {
		if bytes.Contains(b, []byte("breath")) || bytes.Contains(b, []byte("Wheezing")) || bytes.Contains(b, []byte("asthma")) {
			t.Errorf("%s is stored in the clear", name)
		}
	}
	if len(wrapped) != 1+12+32+16 {
		t.Errorf("wrapped data key is %d bytes, want a sealed 32-byte key (61)", len(wrapped))
	}
	// Sealed per patient: the reason opens with this patient's data key and
	// not with another patient's (both unwrapped with the same master key).
	own, err := s.db.DataKey(ctx, testMaster, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := own.Open(reason, "visit/"+visitID+"/reason"); err != nil || string(got) != "shortness of breath" {
		t.Fatalf("the reason under its patient's key = %q, %v", got, err)
	}
	r = s.do("POST", "/v1/patients", desk, patientBody("0010000000001"))
	expect(t, "register another patient", r, 201)
	someoneElse, err := s.db.DataKey(ctx, testMaster, r.json(t)["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := someoneElse.Open(reason, "visit/"+visitID+"/reason"); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("the reason under another patient's key = %q, %v; want seal.ErrOpen", got, err)
	}
	// Every access is in the patient's access log, refusals included.
	r = s.do("GET", "/v1/patients/"+id+"/access-log?limit=500", self, nil)
	var log struct {
		Events []struct{ Action, Outcome string } `json:"events"`
	}
	if err := json.Unmarshal(r.body, &log); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range log.Events {
		seen[e.Action+" "+e.Outcome]++
	}
	for pair, want := range map[string]int{"create-visit denied": 2, "create-visit failed": 2, "create-visit success": 3, "list-visits success": 2,
		"list-visits denied": 4, "read-timeline success": 3, "read-timeline denied": 1} {
		if seen[pair] != want {
			t.Errorf("access log has %d %q, want %d (all: %v)", seen[pair], pair, want, seen)
		}
	}
}

func TestHTTPVaccinations(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	r := s.do("POST", "/v1/patients", desk, patientBody("2005042129809"))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)
	expect(t, "book", s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctorID, "patient_id": id,
		"start": rfc(localDay(t, 1)), "duration_minutes": 15, "reason": "vaccination"}), 201)
	path := "/v1/patients/" + id + "/vaccinations"

	r = s.do("POST", path, doc, map[string]any{"atc_code": "N02BE01", "vaccine_name": "", "date": "2099-01-01", "dose_number": 0})
	expect(t, "a malformed dose", r, 422)
	if got := problemFields(t, r); got != "/problems/validation atc_code,date,dose_number,vaccine_name" {
		t.Fatalf("problem = %s", got)
	}
	first := map[string]any{"atc_code": "j07bb02", "vaccine_name": "Influenza, inactivated", "date": "2025-10-01", "dose_number": 1, "lot": "FLU-25-113"}
	r = s.do("POST", path, doc, first, "Idempotency-Key", "flu-2025")
	expect(t, "record", r, 201)
	if v := r.json(t); v["atc_code"] != "J07BB02" || v["given_by"] != doctorID || v["dose_number"] != 1.0 {
		t.Fatalf("vaccination = %s", r.body)
	}
	if replay := s.do("POST", path, doc, first, "Idempotency-Key", "flu-2025"); replay.status != 201 || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d", replay.status)
	}
	expect(t, "a second dose", s.do("POST", path, doc, map[string]any{"atc_code": "J07BX03", "vaccine_name": "COVID-19, mRNA", "date": "2026-02-10", "dose_number": 3}), 201)
	expect(t, "a receptionist records a dose", s.do("POST", path, desk, first), 403)
	expect(t, "a receptionist reads them", s.do("GET", path, desk, nil), 403)

	r = s.do("GET", path+"?limit=1", s.token(messages.Role_ROLE_PATIENT, id), nil)
	expect(t, "the patient's page 1", r, 200)
	var page struct {
		Vaccinations []struct {
			ATCCode string `json:"atc_code"`
		} `json:"vaccinations"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Vaccinations) != 1 || page.Vaccinations[0].ATCCode != "J07BX03" || page.NextCursor == "" {
		t.Fatalf("page 1 = %s", r.body)
	}
	r = s.do("GET", path+"?limit=1&cursor="+page.NextCursor, doc, nil)
	page.NextCursor = "" // absent on the last page
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Vaccinations) != 1 || page.Vaccinations[0].ATCCode != "J07BB02" || page.NextCursor != "" {
		t.Fatalf("page 2 = %s", r.body)
	}
	// At rest the vaccine, its code and its lot are sealed with the
	// patient's data key.
	rows, err := s.db.Pool.Query(context.Background(), `SELECT atc_code || vaccine_name || lot, details_sealed FROM vaccinations WHERE patient_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var plain string
		var sealed []byte
		if err := rows.Scan(&plain, &sealed); err != nil {
			t.Fatal(err)
		}
		if n++; plain != "" || len(sealed) == 0 || bytes.Contains(sealed, []byte("J07")) || bytes.Contains(sealed, []byte("FLU-25")) {
			t.Errorf("a vaccination is stored as %q, sealed %q", plain, sealed)
		}
	}
	if n != 2 {
		t.Fatalf("%d vaccination rows, want 2", n)
	}
}
