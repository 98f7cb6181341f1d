package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
)

// workingDoctor creates a doctor who works 08:00-18:00 (Europe/Chisinau)
// every day in 15-minute slots.
func workingDoctor(t *testing.T, s *testServer) string {
	t.Helper()
	_, doctorID := directory(t, s)
	workEveryDay(t, s, doctorID)
	return doctorID
}

// workEveryDay sets a doctor's hours to 08:00-18:00 every day, 15-minute slots.
func workEveryDay(t *testing.T, s *testServer, doctorID string) {
	t.Helper()
	var weekly []map[string]any
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"} {
		weekly = append(weekly, map[string]any{"weekday": d, "ranges": []map[string]string{{"start": "08:00", "end": "18:00"}}})
	}
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	expect(t, "set hours", s.do("PUT", "/v1/doctors/"+doctorID+"/availability", admin, map[string]any{"slot_minutes": 15, "weekly": weekly}), 200)
}

// localDay is 10:00 in Chisinau, days from now.
func localDay(t *testing.T, days int) time.Time {
	zone, err := time.LoadLocation("Europe/Chisinau")
	if err != nil {
		t.Fatal(err)
	}
	d := time.Now().In(zone).AddDate(0, 0, days)
	return time.Date(d.Year(), d.Month(), d.Day(), 10, 0, 0, 0, zone)
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func TestHTTPBookingLifecycle(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("0010000000001"))
	expect(t, "register", r, 201)
	pid := r.json(t)["id"].(string)
	r = s.do("POST", "/v1/patients", desk, patientBody("2005042129809"))
	expect(t, "register other", r, 201)
	other := r.json(t)["id"].(string)
	doc := workingDoctor(t, s)
	doc2 := workingDoctor(t, s)
	at := localDay(t, 2)
	body := func(doctor, patient string, start time.Time, minutes int) map[string]any {
		return map[string]any{"doctor_id": doctor, "patient_id": patient, "start": rfc(start), "duration_minutes": minutes, "reason": "control"}
	}

	// Book, replay, reuse the key for another request.
	r = s.do("POST", "/v1/appointments", desk, body(doc, pid, at, 15), "Idempotency-Key", "k1")
	expect(t, "book", r, 201)
	a := r.json(t)
	id := a["id"].(string)
	if a["status"] != "booked" || a["start"] != rfc(at) || a["end"] != rfc(at.Add(15*time.Minute)) || r.header.Get("Location") != "/v1/appointments/"+id {
		t.Fatalf("booked = %s (Location %q)", r.body, r.header.Get("Location"))
	}
	r = s.do("POST", "/v1/appointments", desk, body(doc, pid, at, 15), "Idempotency-Key", "k1")
	expect(t, "replay", r, 201)
	if r.json(t)["id"] != id || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %s", r.body)
	}
	r = s.do("POST", "/v1/appointments", desk, body(doc, pid, at.Add(time.Hour), 15), "Idempotency-Key", "k1")
	expect(t, "key reused for another booking", r, 422)
	if got := problemFields(t, r); got != "/problems/idempotency-key-reused " {
		t.Fatalf("reused key problem = %s", got)
	}
	var rows int
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE id = $1`, id).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("rows for the replayed booking = %d, %v; want 1", rows, err)
	}

	// A 30-minute booking against two 15-minute ones.
	expect(t, "second 15 minutes", s.do("POST", "/v1/appointments", desk, body(doc, other, at.Add(15*time.Minute), 15)), 201)
	for _, start := range []time.Time{at, at.Add(15 * time.Minute), at.Add(-15 * time.Minute)} {
		r = s.do("POST", "/v1/appointments", desk, body(doc, other, start, 30))
		expect(t, "30 minutes over a booked 15 at "+rfc(start), r, 409)
		if got := problemFields(t, r); got != "/problems/slot-taken " {
			t.Fatalf("overlap problem = %s", got)
		}
	}
	expect(t, "30 minutes next to them", s.do("POST", "/v1/appointments", desk, body(doc, other, at.Add(30*time.Minute), 30)), 201)

	// Refusals: outside hours, in the past, off the grid, the patient elsewhere.
	for name, tc := range map[string]struct {
		start   time.Time
		minutes int
		want    string
	}{
		"outside hours": {localDay(t, 2).Add(9 * time.Hour), 15, "/problems/unbookable "},
		"in the past":   {localDay(t, -1), 15, "/problems/unbookable "},
		"off the grid":  {at.Add(2*time.Hour + 7*time.Minute), 15, "/problems/validation start"},
	} {
		r = s.do("POST", "/v1/appointments", desk, body(doc, pid, tc.start, tc.minutes))
		expect(t, name, r, 422)
		if got := problemFields(t, r); got != tc.want {
			t.Fatalf("%s problem = %s, want %s", name, got, tc.want)
		}
	}
	r = s.do("POST", "/v1/appointments", desk, body(doc2, pid, at.Add(5*time.Minute), 15))
	expect(t, "the patient is with the first doctor then", r, 409)
	if got := problemFields(t, r); got != "/problems/patient-overlap " {
		t.Fatalf("patient overlap problem = %s", got)
	}
	r = s.do("POST", "/v1/appointments", desk, body(doc2, "77777777-7777-4777-8777-777777777777", at, 15))
	expect(t, "no such patient", r, 422)
	if got := problemFields(t, r); got != "/problems/validation patient_id" {
		t.Fatalf("unknown patient problem = %s", got)
	}

	// Patients book and cancel only for themselves.
	self := s.token(messages.Role_ROLE_PATIENT, pid)
	expect(t, "patient books for another", s.do("POST", "/v1/appointments", self, body(doc2, other, at.Add(3*time.Hour), 15)), 403)
	r = s.do("POST", "/v1/appointments", self, body(doc2, pid, at.Add(3*time.Hour), 15))
	expect(t, "patient books for themself", r, 201)
	own := r.json(t)["id"].(string)
	otherTok := s.token(messages.Role_ROLE_PATIENT, other)
	expect(t, "another patient cancels it", s.do("POST", "/v1/appointments/"+own+"/cancel", otherTok, nil), 403)
	expect(t, "another patient reads it", s.do("GET", "/v1/appointments/"+own, otherTok, nil), 403)
	r = s.do("POST", "/v1/appointments/"+own+"/cancel", self, nil)
	expect(t, "patient cancels", r, 200)
	if r.json(t)["status"] != "cancelled" {
		t.Fatalf("cancelled = %s", r.body)
	}
	expect(t, "cancel again", s.do("POST", "/v1/appointments/"+own+"/cancel", self, nil), 409)
	expect(t, "the freed slot is bookable", s.do("POST", "/v1/appointments", desk, body(doc2, other, at.Add(3*time.Hour), 15)), 201)

	// Reschedule: into a taken slot is refused; to a free one moves it.
	r = s.do("POST", "/v1/appointments/"+id+"/reschedule", desk, map[string]any{"start": rfc(at.Add(30 * time.Minute))})
	expect(t, "reschedule onto a booking", r, 409)
	moved := at.Add(4 * time.Hour)
	r = s.do("POST", "/v1/appointments/"+id+"/reschedule", self, map[string]any{"start": rfc(moved)})
	expect(t, "reschedule", r, 200)
	if m := r.json(t); m["start"] != rfc(moved) || m["version"] != 3.0 {
		t.Fatalf("rescheduled = %s", r.body)
	}
	slots := s.do("GET", fmt.Sprintf("/v1/doctors/%s/slots?from=%s&to=%s", doc, rfc(at), rfc(at.Add(5*time.Hour))), self, nil)
	expect(t, "slots", slots, 200)
	free := map[string]bool{}
	for _, sl := range slots.json(t)["slots"].([]any) {
		free[sl.(map[string]any)["start"].(string)] = true
	}
	if !free[rfc(at)] || free[rfc(moved)] || free[rfc(at.Add(15*time.Minute))] {
		t.Fatalf("after the move: old slot free %v, new slot free %v, booked slot free %v; want true, false, false",
			free[rfc(at)], free[rfc(moved)], free[rfc(at.Add(15*time.Minute))])
	}

	// Arrival and completion: the desk checks in, only the own doctor completes.
	doctorTok := s.token(messages.Role_ROLE_DOCTOR, doc)
	otherDoctor := s.token(messages.Role_ROLE_DOCTOR, doc2)
	expect(t, "check in", s.do("POST", "/v1/appointments/"+id+"/check-in", desk, nil), 200)
	expect(t, "another doctor completes", s.do("POST", "/v1/appointments/"+id+"/complete", otherDoctor, nil), 403)
	r = s.do("POST", "/v1/appointments/"+id+"/complete", doctorTok, nil)
	expect(t, "complete", r, 200)
	if r.json(t)["status"] != "completed" {
		t.Fatalf("completed = %s", r.body)
	}
	expect(t, "no-show before the start", s.do("POST", "/v1/appointments/"+id+"/no-show", desk, nil), 409)
	expect(t, "reschedule a completed one", s.do("POST", "/v1/appointments/"+id+"/reschedule", desk, map[string]any{"start": rfc(at.Add(6 * time.Hour))}), 409)

	// The agenda: in full for the doctor, times only for another doctor.
	q := fmt.Sprintf("/v1/doctors/%s/appointments?from=%s&to=%s", doc, rfc(at.Add(-time.Hour)), rfc(at.Add(8*time.Hour)))
	r = s.do("GET", q, doctorTok, nil)
	expect(t, "own agenda", r, 200)
	agenda := r.json(t)["appointments"].([]any)
	if len(agenda) != 3 || agenda[0].(map[string]any)["patient_id"] == nil {
		t.Fatalf("own agenda = %s", r.body)
	}
	r = s.do("GET", q, otherDoctor, nil)
	expect(t, "another doctor's agenda", r, 200)
	if m := r.json(t); m["redacted"] != true || m["appointments"].([]any)[0].(map[string]any)["patient_id"] != nil {
		t.Fatalf("redacted agenda = %s", r.body)
	}
	expect(t, "a patient reads an agenda", s.do("GET", q, self, nil), 403)

	// The patient's list, paged, and their access log names the bookings.
	r = s.do("GET", "/v1/patients/"+pid+"/appointments?limit=1", self, nil)
	expect(t, "own appointments", r, 200)
	page := r.json(t)
	if len(page["appointments"].([]any)) != 1 || page["next_cursor"] == nil {
		t.Fatalf("first page = %s", r.body)
	}
	r = s.do("GET", "/v1/patients/"+pid+"/appointments?limit=1&cursor="+page["next_cursor"].(string), self, nil)
	expect(t, "second page", r, 200)
	if len(r.json(t)["appointments"].([]any)) != 1 {
		t.Fatalf("second page = %s", r.body)
	}
	expect(t, "another's appointments", s.do("GET", "/v1/patients/"+pid+"/appointments", otherTok, nil), 403)
	r = s.do("GET", "/v1/patients/"+pid+"/access-log?limit=500", self, nil)
	expect(t, "access log", r, 200)
	seen := map[string]int{}
	for _, e := range r.json(t)["events"].([]any) {
		ev := e.(map[string]any)
		if ev["resource_type"] == "appointment" {
			seen[ev["action"].(string)+"/"+ev["outcome"].(string)]++
		}
	}
	for _, want := range []string{"create/success", "create/failed", "cancel/success", "reschedule/success", "check-in/success", "complete/success", "read/success"} {
		if seen[want] == 0 {
			t.Fatalf("access log has no %s appointment event: %v", want, seen)
		}
	}
}

// clockChanges returns the next day zone's clocks go forward and the next
// day they go back, each at least two days after now (bookings must be in
// the future), as local midnights: daylight-saving tests run on any date.
func clockChanges(t *testing.T, zone *time.Location, now time.Time) (forward, back time.Time) {
	t.Helper()
	d := now.In(zone).AddDate(0, 0, 2)
	for day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, zone); forward.IsZero() || back.IsZero(); day = day.AddDate(0, 0, 1) {
		if day.Sub(now) > 2*366*24*time.Hour {
			t.Fatalf("%s does not change its clocks within two years of %s", zone, now)
		}
		_, before := day.Zone()
		_, after := time.Date(day.Year(), day.Month(), day.Day(), 12, 0, 0, 0, zone).Zone()
		switch {
		case after > before && forward.IsZero():
			forward = day
		case after < before && back.IsZero():
			back = day
		}
	}
	return forward, back
}

func TestClockChangesFindChisinausDaylightSaving(t *testing.T) {
	zone, err := time.LoadLocation("Europe/Chisinau")
	if err != nil {
		t.Fatal(err)
	}
	// From 2026-11-26 (and on the days that matter around each change).
	for _, tc := range []struct{ now, forward, back string }{
		{"2026-11-26T10:00:00Z", "2027-03-28", "2027-10-31"},
		{"2027-03-27T10:00:00Z", "2028-03-26", "2027-10-31"}, // a day before: too close, next year's
		{"2027-03-25T10:00:00Z", "2027-03-28", "2027-10-31"},
		{"2027-10-30T10:00:00Z", "2028-03-26", "2028-10-29"},
	} {
		now, _ := time.Parse(time.RFC3339, tc.now)
		f, b := clockChanges(t, zone, now)
		if got := f.Format(time.DateOnly) + " " + b.Format(time.DateOnly); got != tc.forward+" "+tc.back {
			t.Errorf("clockChanges(%s) = %s, want %s %s", tc.now, got, tc.forward, tc.back)
		}
	}
}

// TestHTTPBookingAcrossDaylightSaving books at the doctor's 08:00 on the
// next days Chisinau's clocks move: the UTC instant of 08:00 moves with
// them, and 07:00 local (an hour before the doctor's hours) is refused.
func TestHTTPBookingAcrossDaylightSaving(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("0010000000001"))
	expect(t, "register", r, 201)
	pid := r.json(t)["id"].(string)
	doc := workingDoctor(t, s)
	zone, err := time.LoadLocation("Europe/Chisinau")
	if err != nil {
		t.Fatal(err)
	}
	forward, back := clockChanges(t, zone, time.Now())
	for _, tc := range []struct {
		day  string
		date time.Time // local midnight, before the change
	}{
		{"spring forward", forward}, // 08:00 EEST is 05:00Z
		{"fall back", back},         // 08:00 EET is 06:00Z
	} {
		eight := time.Date(tc.date.Year(), tc.date.Month(), tc.date.Day(), 8, 0, 0, 0, zone)
		if offsetOf(eight) == offsetOf(tc.date) {
			t.Fatalf("%s: the clocks of %s do not change between midnight and 08:00", tc.day, tc.date.Format(time.DateOnly))
		}
		r = s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doc, "patient_id": pid, "start": rfc(eight)})
		expect(t, tc.day+": book 08:00 local", r, 201)
		if got, want := r.json(t)["start"], rfc(eight); got != want {
			t.Fatalf("%s: booked %s, want start %s", tc.day, r.body, want)
		}
		if got, want := r.json(t)["end"], rfc(eight.Add(15*time.Minute)); got != want {
			t.Fatalf("%s: booked %s, want end %s", tc.day, r.body, want)
		}
		r = s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doc, "patient_id": pid, "start": rfc(eight.Add(-time.Hour))})
		expect(t, tc.day+": book 07:00 local", r, 422)
	}
}

// offsetOf is the UTC offset in force at t in t's own zone.
func offsetOf(t time.Time) time.Duration {
	_, off := t.Zone()
	return time.Duration(off) * time.Second
}
