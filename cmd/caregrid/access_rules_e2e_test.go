package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

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
