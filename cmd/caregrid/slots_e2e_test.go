package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
)

type foundSlot struct {
	DoctorID  string `json:"doctor_id"`
	ClinicID  string `json:"clinic_id"`
	Specialty string `json:"specialty"`
	Start     string `json:"start"`
	End       string `json:"end"`
}

// findSlots asks GET /v1/slots and decodes the page.
func findSlots(t *testing.T, s *testServer, token string, q url.Values) ([]foundSlot, string) {
	t.Helper()
	r := s.do("GET", "/v1/slots?"+q.Encode(), token, nil)
	expect(t, "find slots "+q.Encode(), r, 200)
	var page struct {
		Slots      []foundSlot `json:"slots"`
		NextCursor string      `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	return page.Slots, page.NextCursor
}

// grainSlots is what the doctors' own calendar grains say is free, merged
// in (start, doctor) order: the answer the read model must converge to.
func grainSlots(t *testing.T, s *testServer, token string, from, to time.Time, doctors map[string]foundSlot) []foundSlot {
	t.Helper()
	var out []foundSlot
	for id, d := range doctors {
		r := s.do("GET", "/v1/doctors/"+id+"/slots?from="+rfc(from)+"&to="+rfc(to), token, nil)
		expect(t, "doctor slots", r, 200)
		var page struct{ Slots []struct{ Start, End string } }
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, sl := range page.Slots {
			out = append(out, foundSlot{DoctorID: id, ClinicID: d.ClinicID, Specialty: d.Specialty, Start: sl.Start, End: sl.End})
		}
	}
	slices.SortFunc(out, func(a, b foundSlot) int {
		if c := strings.Compare(a.Start, b.Start); c != 0 { // RFC 3339 in UTC sorts as time
			return c
		}
		return strings.Compare(a.DoctorID, b.DoctorID)
	})
	return out
}

// TestHTTPSlotFinder: GET /v1/slots, fed by the outbox relay, converges to
// what the calendar grains themselves answer, for each filter, across
// bookings and a cancellation, and pages without losing or repeating a slot.
func TestHTTPSlotFinder(t *testing.T) {
	s := startTestServer(t)
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	patientTok := s.token(messages.Role_ROLE_PATIENT, "someone")
	clinicA, cardioA := directory(t, s)
	clinicB, cardioB := directory(t, s)
	r := s.do("POST", "/v1/doctors", admin, map[string]any{"given_name": "Ion", "family_name": "Popa", "specialty": "Neurology",
		"clinic_id": clinicA, "time_zone": "Europe/Chisinau", "slot_minutes": 20})
	expect(t, "create neurologist", r, 201)
	neuro := r.json(t)["id"].(string)
	for _, d := range []string{cardioA, cardioB, neuro} {
		workEveryDay(t, s, d)
	}
	doctors := map[string]foundSlot{
		cardioA: {ClinicID: clinicA, Specialty: "cardiology"},
		cardioB: {ClinicID: clinicB, Specialty: "cardiology"},
		neuro:   {ClinicID: clinicA, Specialty: "neurology"},
	}
	pick := func(ids ...string) map[string]foundSlot {
		m := map[string]foundSlot{}
		for _, id := range ids {
			m[id] = doctors[id]
		}
		return m
	}

	// Two patients book; one cancels.
	at := localDay(t, 2)
	var pids []string
	for _, idnp := range []string{"0010000000001", "2005042129809"} {
		r := s.do("POST", "/v1/patients", desk, patientBody(idnp))
		expect(t, "register", r, 201)
		pids = append(pids, r.json(t)["id"].(string))
	}
	book := func(doctor, patient string, start time.Time, minutes int) string {
		r := s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctor, "patient_id": patient, "start": rfc(start), "duration_minutes": minutes})
		expect(t, "book", r, 201)
		return r.json(t)["id"].(string)
	}
	book(cardioA, pids[0], at, 30)
	book(cardioB, pids[1], at.Add(15*time.Minute), 15)
	cancelled := book(cardioA, pids[1], at.Add(time.Hour), 15)
	expect(t, "cancel", s.do("POST", "/v1/appointments/"+cancelled+"/cancel", desk, map[string]any{}), 200)

	from, to := at.Add(-time.Hour), at.Add(2*time.Hour)
	cases := []struct {
		name    string
		q       url.Values
		doctors map[string]foundSlot
	}{
		{"cardiology", url.Values{"specialty": {"cardiology"}}, pick(cardioA, cardioB)},
		{"cardiology at clinic A, any case", url.Values{"specialty": {" CARDIOLOGY"}, "clinic": {strings.ToUpper(clinicA)}}, pick(cardioA)},
		{"neurology", url.Values{"specialty": {"Neurology"}}, pick(neuro)},
		{"clinic A", url.Values{"clinic": {clinicA}}, pick(cardioA, neuro)},
		{"anyone", url.Values{}, doctors},
		{"no such specialty", url.Values{"specialty": {"dermatology"}}, pick()},
	}
	for _, tc := range cases {
		tc.q.Set("from", rfc(from))
		tc.q.Set("to", rfc(to))
		tc.q.Set("limit", "500")
		want := grainSlots(t, s, desk, from, to, tc.doctors)
		// The read model trails the grains by the relay's lag: wait for it.
		var got []foundSlot
		await.Until(t, tc.name+": the read model to show what the grains say "+fmt.Sprint(want), 30*time.Second, func() bool {
			got, _ = findSlots(t, s, patientTok, tc.q)
			return slices.Equal(got, want)
		})
		if tc.name == "cardiology" {
			// The booked 30 minutes of cardioA and the cancelled hour are visible as such.
			has := func(doctor string, start time.Time) bool {
				return slices.ContainsFunc(got, func(f foundSlot) bool { return f.DoctorID == doctor && f.Start == rfc(start) })
			}
			if has(cardioA, at) || has(cardioA, at.Add(15*time.Minute)) || !has(cardioA, at.Add(time.Hour)) || has(cardioB, at.Add(15*time.Minute)) || !has(cardioB, at) {
				t.Fatalf("cardiology slots around the bookings are wrong: %v", got)
			}
		}
	}

	// Paging: pages of 7 concatenate to the whole list, none repeated.
	q := url.Values{"from": {rfc(from)}, "to": {rfc(to)}, "limit": {"500"}}
	all, next := findSlots(t, s, desk, q)
	if next != "" || len(all) < 20 {
		t.Fatalf("whole list: %d slots, next %q", len(all), next)
	}
	var paged []foundSlot
	q.Set("limit", "7")
	for pages := 0; ; pages++ {
		page, next := findSlots(t, s, desk, q)
		paged = append(paged, page...)
		if next == "" {
			break
		}
		if len(page) != 7 || pages > len(all) {
			t.Fatalf("page %d has %d slots with a next cursor", pages, len(page))
		}
		q.Set("cursor", next)
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages = %v\nwhole = %v", paged, all)
	}

	// Every event is delivered, and the relay says so. Events written in
	// the relay's last idle interval (200 ms) may still be waiting: poll.
	await.Until(t, "the outbox to be empty", 30*time.Second, func() bool {
		var undelivered int
		if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&undelivered); err != nil {
			t.Fatal(err)
		}
		return undelivered == 0
	})
	if m := s.do("GET", "/metrics", "", nil); !strings.Contains(string(m.body), "caregrid_outbox_relayed_total") {
		t.Fatal("no caregrid_outbox_relayed_total in /metrics")
	}

	// Bad searches say what is wrong.
	for name, tc := range map[string]struct {
		query  string
		status int
		want   string
	}{
		"no from":         {"to=" + rfc(to), 400, "/problems/malformed-request from"},
		"to before from":  {"from=" + rfc(to) + "&to=" + rfc(from), 422, "/problems/validation to"},
		"over 31 days":    {"from=" + rfc(from) + "&to=" + rfc(from.AddDate(0, 0, 32)), 422, "/problems/validation to"},
		"limit 0":         {"from=" + rfc(from) + "&to=" + rfc(to) + "&limit=0", 400, "/problems/malformed-request limit"},
		"limit 501":       {"from=" + rfc(from) + "&to=" + rfc(to) + "&limit=501", 400, "/problems/malformed-request limit"},
		"clinic not UUID": {"from=" + rfc(from) + "&to=" + rfc(to) + "&clinic=x", 400, "/problems/malformed-request clinic"},
		"bad cursor":      {"from=" + rfc(from) + "&to=" + rfc(to) + "&cursor=nope", 422, "/problems/validation cursor"},
		"long specialty":  {"from=" + rfc(from) + "&to=" + rfc(to) + "&specialty=" + strings.Repeat("x", 101), 422, "/problems/validation specialty"},
	} {
		r := s.do("GET", "/v1/slots?"+tc.query, desk, nil)
		expect(t, name, r, tc.status)
		if got := problemFields(t, r); got != tc.want {
			t.Errorf("%s: problem %s, want %s", name, got, tc.want)
		}
	}
	expect(t, "without a token", s.do("GET", "/v1/slots?"+q.Encode(), "", nil), 401)
}
