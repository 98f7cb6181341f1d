package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
)

// TestNamesWhereIdsStood: the lists people read carry names beside ids:
// the desk's day list and a doctor's agenda name the patient and the
// doctor, free slots the doctor and the clinic, and the patient's access
// log (newest first, within from/to) the reader, their role, their clinic
// and the application. A doctor sees another doctor's day as times only,
// and every patient listed in full finds the listing in their access log.
func TestNamesWhereIdsStood(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	clinicID, doctorID := directory(t, s)
	workEveryDay(t, s, doctorID)
	deskToken := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-ana")
	deskID := subject(messages.Role_ROLE_RECEPTIONIST, "desk-ana")
	if err := s.db.SetAccountProfile(ctx, deskID, "Ana Rusu", clinicID); err != nil {
		t.Fatal(err)
	}
	body := patientBody(nextIDNP())
	body["given_name"], body["family_name"] = "Ion", "Ceban"
	r := s.do("POST", "/v1/patients", deskToken, body)
	expect(t, "register", r, 201)
	patientID := r.json(t)["id"].(string)
	day := localDay(t, 1)
	r = s.do("POST", "/v1/appointments", deskToken, map[string]any{"doctor_id": doctorID, "patient_id": patientID,
		"start": rfc(day), "duration_minutes": 15, "reason": "control"})
	expect(t, "book", r, 201)
	appointmentID := r.json(t)["id"].(string)
	// The names come from the read model, which the relay fills.
	await.Until(t, "the patient is in the read model", 10*time.Second, func() bool {
		r := s.do("GET", "/v1/patients?q=Ceban", deskToken, nil)
		return r.status == 200 && strings.Contains(string(r.body), patientID)
	})

	type appointments struct {
		Appointments []struct {
			ID, PatientID, PatientName, DoctorName string
		} `json:"appointments"`
		Redacted   bool   `json:"redacted"`
		NextCursor string `json:"next_cursor"`
	}
	list := func(token, query string) (int, appointments) {
		r := s.do("GET", "/v1/appointments?"+query, token, nil)
		var out appointments
		if r.status == 200 {
			if err := json.Unmarshal(snake(r.body), &out); err != nil {
				t.Fatal(err)
			}
		}
		return r.status, out
	}
	date := day.Format(time.DateOnly)
	status, got := list(deskToken, "clinic="+clinicID+"&date="+date)
	if status != 200 || len(got.Appointments) != 1 || got.Redacted {
		t.Fatalf("the desk's day list: %d %+v", status, got)
	}
	if a := got.Appointments[0]; a.ID != appointmentID || a.PatientName != "Ion Ceban" || a.DoctorName != "Elena Munteanu" {
		t.Fatalf("day list entry %+v, want the patient's and the doctor's names", a)
	}
	if status, got := list(deskToken, "doctor="+doctorID+"&date="+date+"&status=cancelled"); status != 200 || len(got.Appointments) != 0 {
		t.Fatalf("cancelled only: %d %+v", status, got)
	}
	if status, got := list(deskToken, "clinic="+clinicID+"&date="+day.AddDate(0, 0, 1).Format(time.DateOnly)); status != 200 || len(got.Appointments) != 0 {
		t.Fatalf("the next day: %d %+v", status, got)
	}
	other := s.token(messages.Role_ROLE_DOCTOR, "another-doctor")
	status, got = list(other, "clinic="+clinicID+"&date="+date)
	if status != 200 || !got.Redacted || len(got.Appointments) != 1 || got.Appointments[0].PatientID != "" || got.Appointments[0].PatientName != "" {
		t.Fatalf("another doctor's view: %d %+v", status, got)
	}
	for _, bad := range []string{"date=" + date, "clinic=" + clinicID, "clinic=x&date=" + date, "clinic=" + clinicID + "&date=" + date + "&status=held",
		"clinic=" + clinicID + "&date=" + date + "&limit=501", "clinic=" + clinicID + "&date=" + date + "&cursor=zz"} {
		if status, _ := list(deskToken, bad); status != 400 {
			t.Errorf("?%s = %d, want 400", bad, status)
		}
	}
	if status, _ := list(s.token(messages.Role_ROLE_PATIENT, patientID), "clinic="+clinicID+"&date="+date); status != 403 {
		t.Errorf("a patient lists a clinic's day: %d, want 403", status)
	}

	// The doctor's agenda names the patient.
	from, to := url.QueryEscape(rfc(day.Add(-time.Hour))), url.QueryEscape(rfc(day.Add(time.Hour)))
	r = s.do("GET", "/v1/doctors/"+doctorID+"/appointments?from="+from+"&to="+to, s.token(messages.Role_ROLE_DOCTOR, doctorID), nil)
	expect(t, "agenda", r, 200)
	var agenda appointments
	if err := json.Unmarshal(snake(r.body), &agenda); err != nil || len(agenda.Appointments) != 1 || agenda.Appointments[0].PatientName != "Ion Ceban" {
		t.Fatalf("agenda %s (%v)", r.body, err)
	}

	// Free slots name the doctor and the clinic; a renamed clinic shows its new name.
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	r = s.do("GET", "/v1/clinics/"+clinicID, admin, nil)
	expect(t, "clinic", r, 200)
	r = s.do("PATCH", "/v1/clinics/"+clinicID, admin, map[string]any{"name": "Spitalul Republican"}, "If-Match", r.header.Get("ETag"))
	expect(t, "rename clinic", r, 200)
	if r.json(t)["name"] != "Spitalul Republican" || r.json(t)["version"] != float64(2) {
		t.Fatalf("renamed clinic %s", r.body)
	}
	expect(t, "rename with a stale version", s.do("PATCH", "/v1/clinics/"+clinicID, admin, map[string]any{"name": "X"}, "If-Match", `"1"`), 412)
	expect(t, "rename to nothing", s.do("PATCH", "/v1/clinics/"+clinicID, admin, map[string]any{"name": " "}, "If-Match", `"2"`), 422)
	expect(t, "change the clinic's id", s.do("PATCH", "/v1/clinics/"+clinicID, admin, map[string]any{"id": clinicID}, "If-Match", `"2"`), 422)
	expect(t, "rename as the desk", s.do("PATCH", "/v1/clinics/"+clinicID, deskToken, map[string]any{"name": "X"}, "If-Match", `"2"`), 403)
	r = s.do("GET", "/v1/slots?specialty=cardiology&limit=1&from="+from+"&to="+url.QueryEscape(rfc(day.Add(24*time.Hour))), deskToken, nil)
	expect(t, "slots", r, 200)
	var slots struct {
		Slots []struct{ DoctorName, ClinicName string } `json:"slots"`
	}
	if err := json.Unmarshal(snake(r.body), &slots); err != nil || len(slots.Slots) != 1 ||
		slots.Slots[0].DoctorName != "Elena Munteanu" || slots.Slots[0].ClinicName != "Spitalul Republican" {
		t.Fatalf("slots %s (%v)", r.body, err)
	}

	// The patient's access log: newest first, with who, their clinic and the app.
	patientToken := s.token(messages.Role_ROLE_PATIENT, patientID)
	type event struct {
		OccurredAt                                     time.Time
		Subject, SubjectName, Role, ClinicName, Action string
		ClientName                                     string
	}
	accessLog := func(query string) []event {
		t.Helper()
		r := s.do("GET", "/v1/patients/"+patientID+"/access-log?limit=500"+query, patientToken, nil)
		expect(t, "access log"+query, r, 200)
		var log struct{ Events []event }
		if err := json.Unmarshal(snake(r.body), &log); err != nil {
			t.Fatal(err)
		}
		return log.Events
	}
	events := accessLog("")
	var listing *event
	for i, e := range events {
		if i > 0 && e.OccurredAt.After(events[i-1].OccurredAt) {
			t.Fatalf("the access log is not newest first: %v after %v", e.OccurredAt, events[i-1].OccurredAt)
		}
		if e.Action == "list" && e.Subject == deskID && listing == nil {
			listing = &events[i]
		}
	}
	if listing == nil {
		t.Fatalf("the desk's day list is not in the patient's access log: %+v", events)
	}
	if listing.SubjectName != "Ana Rusu" || listing.Role != "receptionist" || listing.ClinicName != "Spitalul Republican" || listing.ClientName != "receptionist/desk-ana" {
		t.Fatalf("the listing's entry %+v, want the desk's name, role, clinic and app", *listing)
	}
	for _, e := range events {
		if e.Subject == doctorID && e.SubjectName != "Elena Munteanu" {
			t.Fatalf("the doctor's entry %+v, want the name on their record", e)
		}
	}
	// Reading the log adds to it (read-access-log): count only what came before.
	older := 0
	for _, e := range events {
		if e.OccurredAt.Before(listing.OccurredAt) {
			older++
		}
	}
	before := accessLog("&to=" + url.QueryEscape(listing.OccurredAt.Format(time.RFC3339Nano)))
	if len(before) != older || older == 0 {
		t.Fatalf("?to= kept %d events, want the %d older than the listing", len(before), older)
	}
	since := accessLog("&from=" + url.QueryEscape(listing.OccurredAt.Format(time.RFC3339Nano)))
	found := false
	for _, e := range since {
		if e.OccurredAt.Before(listing.OccurredAt) {
			t.Fatalf("?from= let through %+v", e)
		}
		found = found || (e.Action == "list" && e.Subject == deskID)
	}
	if !found {
		t.Fatal("?from= lost the event it starts at")
	}
	expect(t, "from after to", s.do("GET", "/v1/patients/"+patientID+"/access-log?from="+to+"&to="+from, patientToken, nil), 422)
	expect(t, "a bad from", s.do("GET", "/v1/patients/"+patientID+"/access-log?from=yesterday", patientToken, nil), 400)
}

// TestAccountDirectoryAndProfiles: admins list accounts by role, status
// and name, and give receptionists and admins a display name and clinic;
// a doctor's name stays the one on their record.
func TestAccountDirectoryAndProfiles(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	clinicID, doctorID := directory(t, s)
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	s.token(messages.Role_ROLE_DOCTOR, doctorID)
	for _, name := range []string{"desk-ana", "desk-boris", "desk-carmen"} {
		s.token(messages.Role_ROLE_RECEPTIONIST, name)
	}
	boris := subject(messages.Role_ROLE_RECEPTIONIST, "desk-boris")
	if _, err := s.db.SetAccountDisabled(ctx, subject(messages.Role_ROLE_RECEPTIONIST, "desk-carmen"), true); err != nil {
		t.Fatal(err)
	}
	type accounts struct {
		Accounts []struct {
			ID, Username, DisplayName, Role, ClinicName string
		}
		NextCursor string
	}
	list := func(query string) accounts {
		t.Helper()
		r := s.do("GET", "/v1/accounts?"+query, admin, nil)
		expect(t, "accounts?"+query, r, 200)
		var out accounts
		if err := json.Unmarshal(snake(r.body), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	usernames := func(a accounts) string {
		var s []string
		for _, x := range a.Accounts {
			s = append(s, x.Username)
		}
		return strings.Join(s, ",")
	}
	desks := list("role=receptionist")
	if len(desks.Accounts) != 3 {
		t.Fatalf("receptionists: %s", usernames(desks))
	}
	// Pages of two, by username.
	first := list("role=receptionist&limit=2")
	second := list("role=receptionist&limit=2&cursor=" + first.NextCursor)
	if len(first.Accounts) != 2 || first.NextCursor == "" || len(second.Accounts) != 1 || second.NextCursor != "" ||
		usernames(first)+","+usernames(second) != usernames(desks) {
		t.Fatalf("pages %q + %q, want %q", usernames(first), usernames(second), usernames(desks))
	}
	if got := list("role=receptionist&status=disabled"); len(got.Accounts) != 1 {
		t.Fatalf("disabled receptionists: %s", usernames(got))
	}
	if got := list("role=receptionist&status=active"); len(got.Accounts) != 2 {
		t.Fatalf("active receptionists: %s", usernames(got))
	}
	doctors := list("role=doctor")
	if len(doctors.Accounts) != 1 || doctors.Accounts[0].DisplayName != "Elena Munteanu" || doctors.Accounts[0].ClinicName != "Spitalul Clinic Republican" {
		t.Fatalf("the doctor's account %+v, want the name and clinic on the record", doctors)
	}

	r := s.do("PATCH", "/v1/accounts/"+boris, admin, map[string]any{"display_name": "Boris Lungu", "clinic_id": clinicID},
		"Content-Type", "application/merge-patch+json")
	expect(t, "profile", r, 200)
	if r.json(t)["display_name"] != "Boris Lungu" || r.json(t)["clinic_name"] != "Spitalul Clinic Republican" {
		t.Fatalf("profile %s", r.body)
	}
	if got := list("q=lungu"); len(got.Accounts) != 1 || got.Accounts[0].ID != boris {
		t.Fatalf("by name: %+v", got)
	}
	r = s.do("PATCH", "/v1/accounts/"+boris, admin, map[string]any{"clinic_id": nil}, "Content-Type", "application/merge-patch+json")
	expect(t, "clear the clinic", r, 200)
	if _, ok := r.json(t)["clinic_id"]; ok || r.json(t)["display_name"] != "Boris Lungu" {
		t.Fatalf("after clearing the clinic: %s", r.body)
	}
	for what, tc := range map[string]struct {
		id     string
		body   map[string]any
		status int
	}{
		"a doctor's name":        {doctorID, map[string]any{"display_name": "Dr. X"}, 422},
		"a clinic that is not":   {boris, map[string]any{"clinic_id": "00000000-0000-4000-8000-000000000000"}, 422},
		"a clinic that is no id": {boris, map[string]any{"clinic_id": "clinic-1"}, 422},
		"a control character":    {boris, map[string]any{"display_name": "Boris\u0007"}, 422},
		"an unknown field":       {boris, map[string]any{"role": "admin"}, 400},
		"no such account":        {"00000000-0000-4000-8000-000000000001", map[string]any{"display_name": "X"}, 404},
	} {
		expect(t, what, s.do("PATCH", "/v1/accounts/"+tc.id, admin, tc.body, "Content-Type", "application/merge-patch+json"), tc.status)
	}
	for _, bad := range []string{"role=nurse", "status=asleep", "limit=0", "limit=201", "cursor=%%%", "q=" + strings.Repeat("a", 101)} {
		expect(t, "accounts?"+bad, s.do("GET", "/v1/accounts?"+bad, admin, nil), 400)
	}
	expect(t, "accounts as the desk", s.do("GET", "/v1/accounts", s.token(messages.Role_ROLE_RECEPTIONIST, "desk-ana"), nil), 403)
}

// TestPharmacyFindsActivePrescriptionsByIDNP: a pharmacy service finds
// what it may dispense by the IDNP a patient gives at the counter, only
// the active prescriptions, and the patient sees that it looked.
func TestPharmacyFindsActivePrescriptionsByIDNP(t *testing.T) {
	s := startTestServer(t)
	doctorID := workingDoctor(t, s)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	idnp := nextIDNP()
	r := s.do("POST", "/v1/patients", desk, patientBody(idnp))
	expect(t, "register", r, 201)
	patientID := r.json(t)["id"].(string)
	expect(t, "book", s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctorID, "patient_id": patientID,
		"start": rfc(localDay(t, 1)), "duration_minutes": 15, "reason": "control"}), 201)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	r = s.do("POST", "/v1/prescriptions", doc, prescriptionBody(patientID, "N02BE01", "Paracetamol"))
	expect(t, "prescribe", r, 201)
	active := r.json(t)["id"].(string)
	r = s.do("POST", "/v1/prescriptions", doc, prescriptionBody(patientID, "C09AA05", "Ramipril"))
	expect(t, "prescribe", r, 201)
	cancelled := r.json(t)["id"].(string)
	expect(t, "cancel", s.do("POST", "/v1/prescriptions/"+cancelled+"/cancel", doc, map[string]string{"reason": "changed"}), 200)

	pharmacy := s.token(messages.Role_ROLE_SERVICE, "pharmacy-1")
	r = s.do("GET", "/v1/prescriptions?status=active&patient_idnp="+idnp, pharmacy, nil)
	expect(t, "by IDNP", r, 200)
	var got struct {
		Prescriptions []struct{ ID, Status string }
	}
	if err := json.Unmarshal(snake(r.body), &got); err != nil || len(got.Prescriptions) != 1 || got.Prescriptions[0].ID != active {
		t.Fatalf("active prescriptions %s (%v), want only %s", r.body, err, active)
	}
	for what, tc := range map[string]struct {
		token, query string
		status       int
	}{
		"every status":      {pharmacy, "patient_idnp=" + idnp, 400},
		"completed":         {pharmacy, "status=completed&patient_idnp=" + idnp, 400},
		"a bad check digit": {pharmacy, "status=active&patient_idnp=" + idnp[:12] + string('0'+(idnp[12]-'0'+1)%10), 400},
		"no such patient":   {pharmacy, "status=active&patient_idnp=" + nextIDNP(), 404},
		"the doctor":        {doc, "status=active&patient_idnp=" + idnp, 403},
		"the desk":          {desk, "status=active&patient_idnp=" + idnp, 403},
		"the patient":       {s.token(messages.Role_ROLE_PATIENT, patientID), "status=active&patient_idnp=" + idnp, 403},
	} {
		expect(t, what, s.do("GET", "/v1/prescriptions?"+tc.query, tc.token, nil), tc.status)
	}
	r = s.do("GET", "/v1/patients/"+patientID+"/access-log", s.token(messages.Role_ROLE_PATIENT, patientID), nil)
	expect(t, "access log", r, 200)
	if !strings.Contains(string(r.body), `"action":"list-prescriptions"`) || !strings.Contains(string(r.body), `"client_name":"service/pharmacy-1"`) {
		t.Fatalf("the pharmacy's look is not in the access log: %s", r.body)
	}
}

// snake lets encoding/json fill Go-named fields from the API's snake_case
// keys (patient_name -> PatientName) by dropping the underscores in keys.
func snake(b []byte) []byte {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return b
	}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[strings.ReplaceAll(k, "_", "")] = walk(e)
			}
			return out
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return v
	}
	out, _ := json.Marshal(walk(v))
	return out
}
