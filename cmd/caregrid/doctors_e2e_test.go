package main

import (
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
)

// directory creates a clinic and a doctor as an admin and returns their ids.
func directory(t *testing.T, s *testServer) (clinicID, doctorID string) {
	t.Helper()
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	r := s.do("POST", "/v1/clinics", admin, map[string]any{"name": "Spitalul Clinic Republican", "address": "str. Nicolae Testemițanu 29, Chișinău", "time_zone": "Europe/Chisinau"})
	expect(t, "create clinic", r, 201)
	clinicID = r.json(t)["id"].(string)
	r = s.do("POST", "/v1/doctors", admin, map[string]any{"given_name": "Elena", "family_name": "Munteanu", "specialty": " Cardiology ",
		"clinic_id": clinicID, "email": "elena@example.md", "time_zone": "Europe/Chisinau"})
	expect(t, "create doctor", r, 201)
	doctorID = r.json(t)["id"].(string)
	return clinicID, doctorID
}

func TestHTTPDoctorsClinicsAndHours(t *testing.T) {
	s := startTestServer(t)
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	clinicID, doctorID := directory(t, s)
	pat := s.token(messages.Role_ROLE_PATIENT, "44444444-4444-4444-8444-444444444444")

	r := s.do("GET", "/v1/clinics/"+clinicID, pat, nil)
	expect(t, "read clinic as a patient", r, 200)
	if r.json(t)["time_zone"] != "Europe/Chisinau" {
		t.Fatalf("clinic = %s", r.body)
	}
	expect(t, "create clinic as a receptionist", s.do("POST", "/v1/clinics", desk, map[string]any{"name": "x", "address": "y", "time_zone": "UTC"}), 403)
	r = s.do("POST", "/v1/clinics", admin, map[string]any{"name": "x", "address": "y", "time_zone": "Mars/Olympus"})
	expect(t, "clinic with a bad zone", r, 422)
	if got := problemFields(t, r); got != "/problems/validation time_zone" {
		t.Fatalf("bad zone problem = %s", got)
	}

	r = s.do("GET", "/v1/doctors/"+doctorID, pat, nil)
	expect(t, "read doctor as a patient", r, 200)
	if d := r.json(t); d["specialty"] != "cardiology" || d["slot_minutes"] != 15.0 || d["clinic_id"] != clinicID {
		t.Fatalf("doctor = %s", r.body)
	}
	r = s.do("POST", "/v1/doctors", admin, map[string]any{"given_name": "A", "family_name": "B", "specialty": "x",
		"clinic_id": "55555555-5555-4555-8555-555555555555", "time_zone": "Europe/Chisinau"})
	expect(t, "doctor in an unknown clinic", r, 422)
	if got := problemFields(t, r); got != "/problems/validation clinic_id" {
		t.Fatalf("unknown clinic problem = %s", got)
	}
	r = s.do("PATCH", "/v1/doctors/"+doctorID, admin, map[string]any{"slot_minutes": 30, "phone": "+37322000000"}, "If-Match", `"1"`)
	expect(t, "change doctor", r, 200)
	if d := r.json(t); d["slot_minutes"] != 30.0 || d["version"] != 2.0 {
		t.Fatalf("changed doctor = %s", r.body)
	}
	expect(t, "change doctor as a receptionist", s.do("PATCH", "/v1/doctors/"+doctorID, desk, map[string]any{"phone": nil}, "If-Match", `"2"`), 403)

	// The mornings of the next spring-forward day and the day before it,
	// and the same weekday a week later off.
	zone, err := time.LoadLocation("Europe/Chisinau")
	if err != nil {
		t.Fatal(err)
	}
	change, _ := clockChanges(t, zone, time.Now())
	eve := change.AddDate(0, 0, -1)
	weekday := func(d time.Time) string { return strings.ToLower(d.Weekday().String()) }
	hours := map[string]any{"slot_minutes": 60,
		"weekly": []map[string]any{
			{"weekday": weekday(eve), "ranges": []map[string]string{{"start": "08:00", "end": "10:00"}}},
			{"weekday": weekday(change), "ranges": []map[string]string{{"start": "08:00", "end": "10:00"}}},
		},
		"exceptions": []map[string]any{{"date": eve.AddDate(0, 0, 7).Format(time.DateOnly), "ranges": []map[string]string{}}},
	}
	self := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	other := s.token(messages.Role_ROLE_DOCTOR, "66666666-6666-4666-8666-666666666666")
	expect(t, "hours set by another doctor", s.do("PUT", "/v1/doctors/"+doctorID+"/availability", other, hours), 403)
	r = s.do("PUT", "/v1/doctors/"+doctorID+"/availability", self, hours)
	expect(t, "hours set by the doctor", r, 200)
	if r.header.Get("ETag") != `"3"` {
		t.Fatalf("hours ETag = %q, want the doctor's version 3", r.header.Get("ETag"))
	}
	bad := map[string]any{"weekly": []map[string]any{{"weekday": "monday", "ranges": []map[string]string{{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}}}}}
	r = s.do("PUT", "/v1/doctors/"+doctorID+"/availability", desk, bad)
	expect(t, "overlapping ranges", r, 422)
	if got := problemFields(t, r); got != "/problems/validation weekly.monday" {
		t.Fatalf("overlap problem = %s", got)
	}

	from, to := eve, change.AddDate(0, 0, 7)
	r = s.do("GET", "/v1/doctors/"+doctorID+"/slots?from="+rfc(from)+"&to="+rfc(to), pat, nil)
	expect(t, "slots", r, 200)
	var got []string
	for _, sl := range r.json(t)["slots"].([]any) {
		got = append(got, sl.(map[string]any)["start"].(string))
	}
	// EET (UTC+2) the day before, EEST (UTC+3) from the change; the next
	// week's eve is off, and the next change day is past the end.
	at := func(d time.Time, hour int) time.Time {
		return time.Date(d.Year(), d.Month(), d.Day(), hour, 0, 0, 0, zone)
	}
	if offsetOf(at(eve, 8)) == offsetOf(at(change, 8)) {
		t.Fatalf("08:00 has one offset on %s and %s: no clock change between them", eve, change)
	}
	want := strings.Join([]string{rfc(at(eve, 8)), rfc(at(eve, 9)), rfc(at(change, 8)), rfc(at(change, 9))}, " ")
	if strings.Join(got, " ") != want {
		t.Fatalf("slots = %v\nwant %s", got, want)
	}
	expect(t, "slots over 31 days", s.do("GET", "/v1/doctors/"+doctorID+"/slots?from="+rfc(from)+"&to="+rfc(from.AddDate(0, 0, 59)), pat, nil), 422)
	expect(t, "slots without from", s.do("GET", "/v1/doctors/"+doctorID+"/slots?to="+rfc(to), pat, nil), 400)
	expect(t, "unknown doctor", s.do("GET", "/v1/doctors/77777777-7777-4777-8777-777777777777", pat, nil), 404)
}
