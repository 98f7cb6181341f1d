package main

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// TestADoctorCannotGrantHimselfAccess: booking (and checking in) an
// appointment with himself gives a doctor nothing; an appointment the desk
// booked does, until it is cancelled (at once, though the patient's grain
// had cached the grant) or moved out of the window; a desk check-in of the
// doctor's own booking does.
func TestADoctorCannotGrantHimselfAccess(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("0020000000002"))
	expect(t, "register", r, 201)
	patient := r.json(t)["id"].(string)
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	record := "/v1/patients/" + patient
	book := func(who string, at time.Time) string {
		t.Helper()
		r := s.do("POST", "/v1/appointments", who, map[string]any{"doctor_id": doctorID, "patient_id": patient, "start": rfc(at)})
		expect(t, "book", r, 201)
		return r.json(t)["id"].(string)
	}

	// Self-grant: the doctor books himself, even years ahead, and checks in.
	expect(t, "the record before any appointment", s.do("GET", record, doc, nil), 403)
	own := book(doc, localDay(t, 1))
	expect(t, "the record after booking himself", s.do("GET", record, doc, nil), 403)
	expect(t, "allergies after booking himself", s.do("GET", record+"/visits", doc, nil), 403)
	expect(t, "check in his own booking himself", s.do("POST", "/v1/appointments/"+own+"/check-in", doc, nil), 200)
	expect(t, "the record after checking himself in", s.do("GET", record, doc, nil), 403)

	// The desk books: access, for the patient's record and clinical lists.
	desks := book(desk, localDay(t, 2))
	expect(t, "the record after the desk booked", s.do("GET", record, doc, nil), 200)
	expect(t, "visits after the desk booked", s.do("GET", record+"/visits", doc, nil), 200)
	// Cancel then read: the grant ends at once, cache or not.
	expect(t, "cancel", s.do("POST", "/v1/appointments/"+desks+"/cancel", desk, nil), 200)
	expectSoon(t, "the record after the cancellation", func() int { return s.do("GET", record, doc, nil).status }, 403)

	// Reschedule: moved out of the window (more than 7 days ahead), it grants nothing.
	moved := book(desk, localDay(t, 3))
	expect(t, "the record with a new booking", s.do("GET", record, doc, nil), 200)
	expect(t, "reschedule far ahead", s.do("POST", "/v1/appointments/"+moved+"/reschedule", desk,
		map[string]any{"start": rfc(localDay(t, 20))}), 200)
	expectSoon(t, "the record after the move", func() int { return s.do("GET", record, doc, nil).status }, 403)

	// A desk check-in of the doctor's own booking grants access.
	second := book(doc, localDay(t, 4))
	expect(t, "the record before the desk's check-in", s.do("GET", record, doc, nil), 403)
	expect(t, "the desk checks in", s.do("POST", "/v1/appointments/"+second+"/check-in", desk, nil), 200)
	expect(t, "the record after the desk's check-in", s.do("GET", record, doc, nil), 200)
}

// expectSoon: the patient's grain hears of an appointment change from the
// calendar's commit, a moment after the change's own answer.
func expectSoon(t *testing.T, what string, status func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := status()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", what, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCheckInOpensAnHourBefore: with the default window, a check-in a day
// ahead is refused.
func TestCheckInOpensAnHourBefore(t *testing.T) {
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.CheckInOpens = 0 })
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("0030000000003"))
	expect(t, "register", r, 201)
	patient := r.json(t)["id"].(string)
	doctorID := workingDoctor(t, s)
	r = s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctorID, "patient_id": patient, "start": rfc(localDay(t, 1))})
	expect(t, "book", r, 201)
	r = s.do("POST", "/v1/appointments/"+r.json(t)["id"].(string)+"/check-in", desk, nil)
	expect(t, "check in a day ahead", r, 409)
}

// bookedPatient registers a patient and a working doctor, and has the
// desk book the patient with the doctor in days: the relationship that
// lets the doctor read the record. It returns the patient, the doctor and
// the appointment.
func bookedPatient(t *testing.T, s *testServer, days int) (patient, doctor, appointment string) {
	t.Helper()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	patient = r.json(t)["id"].(string)
	doctor = workingDoctor(t, s)
	r = s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctor, "patient_id": patient, "start": rfc(localDay(t, days))})
	expect(t, "book", r, 201)
	return patient, doctor, r.json(t)["id"].(string)
}

// TestWhoMayReadMyRecord: the patient (and the desk on their behalf) sees
// every doctor who may read the record now, why and until when, by the
// rules that are enforced: a desk-booked appointment's doctor until 90
// days after it, a care-team member without end, and not a doctor who
// booked himself. Doctors do not see the list, and the read is audited.
func TestWhoMayReadMyRecord(t *testing.T) {
	s := startTestServer(t)
	patient, booked, appointment := bookedPatient(t, s, 2)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	newDoctor := func(family string) string {
		t.Helper()
		r := s.do("GET", "/v1/doctors/"+booked, admin, nil)
		expect(t, "doctor", r, 200)
		r = s.do("POST", "/v1/doctors", admin, map[string]any{"given_name": "Vlad", "family_name": family, "specialty": "Neurology",
			"clinic_id": r.json(t)["clinic_id"], "time_zone": "Europe/Chisinau"})
		expect(t, "create doctor", r, 201)
		id := r.json(t)["id"].(string)
		workEveryDay(t, s, id)
		return id
	}
	team := newDoctor("Echipa")
	expect(t, "care team", s.do("PUT", "/v1/patients/"+patient+"/care-team/"+team, desk, nil), 200)
	self := newDoctor("Singur")
	expect(t, "self-booking", s.do("POST", "/v1/appointments", s.token(messages.Role_ROLE_DOCTOR, self),
		map[string]any{"doctor_id": self, "patient_id": patient, "start": rfc(localDay(t, 3))}), 201)

	type grant struct{ DoctorID, DoctorName, Reason, Since, Until, AppointmentID, AppointmentStart string }
	read := func(token string) (int, []grant) {
		r := s.do("GET", "/v1/patients/"+patient+"/access-grants", token, nil)
		var out struct{ Grants []grant }
		if r.status == 200 {
			if err := json.Unmarshal(snake(r.body), &out); err != nil {
				t.Fatal(err)
			}
		}
		return r.status, out.Grants
	}
	status, grants := read(s.token(messages.Role_ROLE_PATIENT, patient))
	if status != 200 || len(grants) != 2 {
		t.Fatalf("the patient's view: %d %+v, want the booked doctor and the care team", status, grants)
	}
	byDoctor := map[string]grant{}
	for _, g := range grants {
		byDoctor[g.DoctorID] = g
	}
	start := localDay(t, 2).UTC()
	if g := byDoctor[booked]; g.Reason != "appointment" || g.AppointmentID != appointment || g.AppointmentStart != rfc(start) ||
		g.Until != rfc(start.Add(persistence.DefaultCareWindow.After)) || g.DoctorName == "" {
		t.Errorf("the booked doctor's grant %+v, want the appointment, lapsing %v after it", g, persistence.DefaultCareWindow.After)
	}
	if g := byDoctor[team]; g.Reason != "care-team" || g.Until != "" || g.DoctorName != "Vlad Echipa" {
		t.Errorf("the care team's grant %+v, want no end", g)
	}
	if _, listed := byDoctor[self]; listed {
		t.Error("a doctor who booked himself is listed")
	}
	if status, _ := read(desk); status != 200 {
		t.Errorf("the desk: %d, want 200", status)
	}
	for who, token := range map[string]string{"the booked doctor": s.token(messages.Role_ROLE_DOCTOR, booked),
		"another patient": s.token(messages.Role_ROLE_PATIENT, "33333333-3333-4333-8333-333333333333")} {
		if status, _ := read(token); status != 403 {
			t.Errorf("%s: %d, want 403", who, status)
		}
	}
	r := s.do("GET", "/v1/patients/"+patient+"/access-log", s.token(messages.Role_ROLE_PATIENT, patient), nil)
	expect(t, "access log", r, 200)
	if !strings.Contains(string(r.body), `"action":"read-access-grants"`) || !strings.Contains(string(r.body), `"outcome":"denied"`) {
		t.Fatalf("the reads of the grants, allowed and refused, are not in the access log: %s", r.body)
	}
}

// TestAPatientBlocksADoctor: a restriction holds at once over an
// appointment and the care team, on the record, its clinical routes and
// prescriptions (refusals audited); lifting it restores access; a clinic
// block covers its doctors; the history keeps who did what and when.
func TestAPatientBlocksADoctor(t *testing.T) {
	s := startTestServer(t)
	patient, doctor, _ := bookedPatient(t, s, 1)
	self := s.token(messages.Role_ROLE_PATIENT, patient)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doc := s.token(messages.Role_ROLE_DOCTOR, doctor)
	r := s.do("POST", "/v1/prescriptions", doc, prescriptionBody(patient, "N02BE01", "Paracetamol"))
	expect(t, "prescribe before the block", r, 201)
	prescription := r.json(t)["id"].(string)
	reads := map[string]string{
		"record": "/v1/patients/" + patient, "visits": "/v1/patients/" + patient + "/visits",
		"timeline": "/v1/patients/" + patient + "/timeline", "prescription": "/v1/prescriptions/" + prescription,
	}
	readsAs := func(status int) {
		t.Helper()
		for what, path := range reads {
			expect(t, what, s.do("GET", path, doc, nil), status)
		}
	}
	readsAs(200)

	type restrictions struct {
		Restrictions []struct{ ID, Kind, TargetID, TargetName, CreatedBy, LiftedAt, LiftedBy string }
	}
	restrict := func(token string, body map[string]any, status int) restrictions {
		t.Helper()
		r := s.do("POST", "/v1/patients/"+patient+"/restrictions", token, body)
		expect(t, "restrict", r, status)
		var out restrictions
		_ = json.Unmarshal(snake(r.body), &out)
		return out
	}
	got := restrict(self, map[string]any{"kind": "block-doctor", "target_id": doctor}, 201)
	if len(got.Restrictions) != 1 || got.Restrictions[0].TargetName != "Elena Munteanu" || got.Restrictions[0].CreatedBy != patient {
		t.Fatalf("after blocking: %+v", got)
	}
	blockID := got.Restrictions[0].ID
	restrict(self, map[string]any{"kind": "block-doctor", "target_id": doctor}, 200) // already holds
	readsAs(403)
	expect(t, "prescribe while blocked", s.do("POST", "/v1/prescriptions", doc, prescriptionBody(patient, "J01CA04", "Amoxicillin")), 403)
	r = s.do("GET", "/v1/patients/"+patient+"/access-grants", self, nil)
	expect(t, "grants", r, 200)
	if strings.Contains(string(r.body), doctor) {
		t.Fatalf("a blocked doctor is listed as able to read: %s", r.body)
	}
	// The doctor cannot lift his own block, nor make one.
	expect(t, "the doctor lifts", s.do("DELETE", "/v1/patients/"+patient+"/restrictions/"+blockID, doc, nil), 403)
	expect(t, "the doctor restricts", s.do("POST", "/v1/patients/"+patient+"/restrictions", doc, map[string]any{"kind": "block-doctor", "target_id": doctor}), 403)
	for what, body := range map[string]map[string]any{
		"an unknown kind":        {"kind": "block-nurse", "target_id": doctor},
		"no such doctor":         {"kind": "block-doctor", "target_id": "00000000-0000-4000-8000-000000000009"},
		"a target that is no id": {"kind": "block-clinic", "target_id": "clinic-1"},
	} {
		expect(t, what, s.do("POST", "/v1/patients/"+patient+"/restrictions", desk, body), 422)
	}

	r = s.do("DELETE", "/v1/patients/"+patient+"/restrictions/"+blockID, desk, nil)
	expect(t, "lift", r, 200)
	readsAs(200)
	expect(t, "lift again", s.do("DELETE", "/v1/patients/"+patient+"/restrictions/"+blockID, desk, nil), 404)

	// Limited to demographics: the record as the desk sees it, nothing clinical.
	got = restrict(self, map[string]any{"kind": "demographics-only", "target_id": doctor}, 201)
	r = s.do("GET", "/v1/patients/"+patient, doc, nil)
	expect(t, "the record as a limited doctor", r, 200)
	if r.json(t)["clinical_withheld"] != true {
		t.Fatalf("a doctor limited to demographics got %s", r.body)
	}
	for what, path := range reads {
		if what != "record" {
			expect(t, what+" as a limited doctor", s.do("GET", path, doc, nil), 403)
		}
	}
	r = s.do("GET", "/v1/patients/"+patient+"/access-grants", self, nil)
	expect(t, "grants", r, 200)
	if !strings.Contains(string(r.body), `"demographics_only":true`) {
		t.Fatalf("the limit is not shown: %s", r.body)
	}
	for _, x := range got.Restrictions {
		if x.Kind == "demographics-only" && x.LiftedAt == "" {
			expect(t, "lift the limit", s.do("DELETE", "/v1/patients/"+patient+"/restrictions/"+x.ID, self, nil), 200)
		}
	}
	readsAs(200)

	// A clinic block covers the clinic's doctors, the care team included.
	r = s.do("GET", "/v1/doctors/"+doctor, desk, nil)
	expect(t, "doctor", r, 200)
	clinic := r.json(t)["clinic_id"].(string)
	expect(t, "care team", s.do("PUT", "/v1/patients/"+patient+"/care-team/"+doctor, desk, nil), 200)
	got = restrict(desk, map[string]any{"kind": "block-clinic", "target_id": clinic}, 201)
	readsAs(403)
	r = s.do("GET", "/v1/patients/"+patient+"/restrictions", self, nil)
	expect(t, "history", r, 200)
	var history restrictions
	if err := json.Unmarshal(snake(r.body), &history); err != nil || len(history.Restrictions) != 3 {
		t.Fatalf("history %s", r.body)
	}
	if h := history.Restrictions[0]; h.LiftedAt == "" || h.LiftedBy != subject(messages.Role_ROLE_RECEPTIONIST, "desk-1") {
		t.Errorf("the lifted block %+v, want when and by whom", h)
	}
	if h := history.Restrictions[2]; h.Kind != "block-clinic" || h.LiftedAt != "" || h.TargetName == "" {
		t.Errorf("the clinic block %+v", h)
	}
	// A blocked doctor does not find the patient; the desk does.
	found := func(token, q string) int {
		t.Helper()
		r := s.do("GET", "/v1/patients?q="+q, token, nil)
		expect(t, "search "+q, r, 200)
		return strings.Count(string(r.body), patient)
	}
	await.Until(t, "the desk finds the patient", 10*time.Second, func() bool { return found(desk, "Ciobanu") == 1 })
	r = s.do("GET", "/v1/patients/"+patient, desk, nil)
	expect(t, "read as the desk", r, 200)
	idnp := r.json(t)["idnp"].(string)
	for _, q := range []string{"Ciobanu", "Maria%20Ciobanu", idnp} {
		if n := found(doc, q); n != 0 {
			t.Errorf("the blocked doctor finds the patient by %q", q)
		}
	}
	if found(desk, idnp) != 1 {
		t.Error("the desk does not find the patient by IDNP")
	}
	// The refusals are in the patient's access log.
	r = s.do("GET", "/v1/patients/"+patient+"/access-log?limit=500", self, nil)
	expect(t, "access log", r, 200)
	if !strings.Contains(string(r.body), `"action":"restrict"`) || strings.Count(string(r.body), `"outcome":"denied"`) < 4 {
		t.Fatalf("the blocks and the refused reads are not in the access log: %s", r.body)
	}
}

// TestBreakingTheGlass: a doctor without a relationship, even one the
// patient blocked, opens the record by stating why; the access lasts its
// window, is marked in the patient's access log (reason, ETREAT), and
// waits in the review queue until an admin approves or flags it, which
// the patient also sees.
func TestBreakingTheGlass(t *testing.T) {
	var skew atomic.Int64 // how far the grains' clock is ahead
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) {
		c.CareWindow = persistence.DefaultCareWindow
		c.CareWindow.Emergency = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	patient := r.json(t)["id"].(string)
	doctor := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctor)
	self := s.token(messages.Role_ROLE_PATIENT, patient)
	expect(t, "block", s.do("POST", "/v1/patients/"+patient+"/restrictions", self, map[string]any{"kind": "block-doctor", "target_id": doctor}), 201)
	expect(t, "read without a relationship", s.do("GET", "/v1/patients/"+patient+"/visits", doc, nil), 403)

	expect(t, "no reason", s.do("POST", "/v1/patients/"+patient+"/emergency-access", doc, map[string]any{"reason": "x"}), 422)
	expect(t, "as the desk", s.do("POST", "/v1/patients/"+patient+"/emergency-access", desk, map[string]any{"reason": "unconscious on arrival"}), 403)
	r = s.do("POST", "/v1/patients/"+patient+"/emergency-access", doc, map[string]any{"reason": "unconscious on arrival, no relatives"})
	expect(t, "break the glass", r, 201)
	access := r.json(t)["id"].(string)
	expect(t, "read in the emergency, past the block", s.do("GET", "/v1/patients/"+patient+"/visits", doc, nil), 200)
	expect(t, "the record in the emergency", s.do("GET", "/v1/patients/"+patient, doc, nil), 200)
	// It opens the record for reading, not for writing.
	expect(t, "a visit in the emergency", s.do("POST", "/v1/patients/"+patient+"/visits", doc, map[string]any{
		"occurred_at": rfc(time.Now().Add(-time.Minute)), "reason": "emergency",
		"diagnoses": []map[string]string{{"code": "R40.2", "text": "coma"}}}), 403)
	r = s.do("GET", "/v1/patients/"+patient+"/access-grants", self, nil)
	expect(t, "grants", r, 200)
	if !strings.Contains(string(r.body), `"reason":"emergency"`) || !strings.Contains(string(r.body), doctor) {
		t.Fatalf("the emergency access is not among the grants: %s", r.body)
	}

	// The patient's access log marks it.
	r = s.do("GET", "/v1/patients/"+patient+"/access-log", self, nil)
	expect(t, "access log", r, 200)
	if !strings.Contains(string(r.body), `"break_glass_reason":"unconscious on arrival, no relatives"`) || !strings.Contains(string(r.body), `"purpose_of_use":"ETREAT"`) {
		t.Fatalf("the emergency access is not marked in the access log: %s", r.body)
	}

	// It lapses with its window (the grain's clock, moved on).
	skew.Store(int64(61 * time.Minute))
	expect(t, "read after the window", s.do("GET", "/v1/patients/"+patient+"/visits", doc, nil), 403)

	// The review queue: pending, then approved once.
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	r = s.do("GET", "/v1/reviews", admin, nil)
	expect(t, "reviews", r, 200)
	if !strings.Contains(string(r.body), access) || !strings.Contains(string(r.body), `"review":"pending"`) {
		t.Fatalf("the access is not pending review: %s", r.body)
	}
	expect(t, "reviews as a doctor", s.do("GET", "/v1/reviews", doc, nil), 403)
	expect(t, "flag without a note", s.do("POST", "/v1/reviews/"+access, admin, map[string]any{"decision": "flag"}), 422)
	r = s.do("POST", "/v1/reviews/"+access, admin, map[string]any{"decision": "approve", "note": "ER admission confirmed"})
	expect(t, "approve", r, 200)
	if r.json(t)["review"] != "approved" || r.json(t)["reviewed_by"] != subject(messages.Role_ROLE_ADMIN, "admin-1") {
		t.Fatalf("review %s", r.body)
	}
	expect(t, "approve again", s.do("POST", "/v1/reviews/"+access, admin, map[string]any{"decision": "flag", "note": "x"}), 409)
	r = s.do("GET", "/v1/reviews", admin, nil)
	expect(t, "reviews", r, 200)
	if strings.Contains(string(r.body), access) {
		t.Fatalf("an approved access is still pending: %s", r.body)
	}
	r = s.do("GET", "/v1/reviews?status=approved", admin, nil)
	expect(t, "approved reviews", r, 200)
	if !strings.Contains(string(r.body), access) {
		t.Fatalf("the approved access is not listed as approved: %s", r.body)
	}
	r = s.do("GET", "/v1/patients/"+patient+"/access-log", self, nil)
	expect(t, "access log", r, 200)
	if !strings.Contains(string(r.body), `"action":"review-emergency-access"`) {
		t.Fatalf("the review is not in the patient's access log: %s", r.body)
	}
}
