package calendar

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestCheckRequest(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	a := daily(zone, 30, r("08:00", "12:00")) // 06:00-10:00Z in winter
	now := utc("2026-11-23T07:00:00Z")
	tests := []struct {
		start string
		min   int
		want  error
	}{
		{"2026-11-24T06:00:00Z", 30, nil},
		{"2026-11-24T09:30:00Z", 30, nil},
		{"2026-11-24T06:02:00Z", 30, ErrOffGrid},
		{"2026-11-24T06:00:00Z", 31, ErrOffGrid},
		{"2026-11-24T06:00:00Z", 0, ErrDuration},
		{"2026-11-24T06:00:00Z", MaxBookingMinute + 5, ErrDuration},
		{"2026-11-23T06:30:00Z", 30, ErrInPast},
		{"2026-11-24T09:45:00Z", 30, ErrOutsideHours},
		{"2026-11-24T05:55:00Z", 10, ErrOutsideHours},
	}
	for _, tt := range tests {
		s := utc(tt.start)
		iv := Interval{s, s.Add(time.Duration(tt.min) * time.Minute)}
		if err := CheckRequest(a, iv, now); !errors.Is(err, tt.want) {
			t.Errorf("CheckRequest(%s, %d min) = %v, want %v", tt.start, tt.min, err, tt.want)
		}
	}
}

func TestScheduleConflicts(t *testing.T) {
	now := utc("2026-11-23T07:00:00Z")
	at := func(s string, min int) Interval {
		st := utc(s)
		return Interval{st, st.Add(time.Duration(min) * time.Minute)}
	}
	var s Schedule
	// Two 15-minute appointments, then a 30-minute request over both.
	s.Add(Busy{ID: "a1", Interval: at("2026-11-24T06:00:00Z", 15)})
	s.Add(Busy{ID: "a2", Interval: at("2026-11-24T06:15:00Z", 15)})
	if b, ok := s.Conflict(at("2026-11-24T06:00:00Z", 30), now, ""); !ok || b.ID != "a1" {
		t.Fatalf("30 min over two 15s: conflict = %v %v, want a1", b, ok)
	}
	if _, ok := s.Conflict(at("2026-11-24T06:30:00Z", 30), now, ""); ok {
		t.Fatal("a booking right after the last one conflicts")
	}
	if _, ok := s.Conflict(at("2026-11-24T05:45:00Z", 15), now, ""); ok {
		t.Fatal("a booking ending where the first starts conflicts")
	}
	if b, ok := s.Conflict(at("2026-11-24T06:10:00Z", 5), now, ""); !ok || b.ID != "a1" {
		t.Fatalf("5 min inside a1: conflict = %v %v", b, ok)
	}
	// A reschedule of a2 onto itself, shifted, ignores a2 but not a1.
	if _, ok := s.Conflict(at("2026-11-24T06:20:00Z", 15), now, "a2"); ok {
		t.Fatal("a2's reschedule conflicts with a2")
	}
	// A hold blocks until it expires.
	s.Add(Busy{ID: "h1", Interval: at("2026-11-24T07:00:00Z", 30), Hold: true, Expires: now.Add(time.Minute)})
	if _, ok := s.Conflict(at("2026-11-24T07:00:00Z", 30), now, ""); !ok {
		t.Fatal("a live hold does not block")
	}
	later := now.Add(2 * time.Minute)
	if _, ok := s.Conflict(at("2026-11-24T07:00:00Z", 30), later, ""); ok {
		t.Fatal("an expired hold still blocks")
	}
	if exp := s.Expired(later); len(exp) != 1 || exp[0].ID != "h1" {
		t.Fatalf("Expired = %v, want h1", exp)
	}
	s.Remove("a1")
	if _, ok := s.Conflict(at("2026-11-24T06:00:00Z", 15), now, ""); ok {
		t.Fatal("a removed appointment still blocks")
	}
}

func TestFreeSlots(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	a := daily(zone, 30, r("08:00", "10:00")) // 06:00-08:00Z
	now := utc("2026-11-24T06:10:00Z")
	var s Schedule
	s.Add(Busy{ID: "a", Interval: Interval{utc("2026-11-24T06:45:00Z"), utc("2026-11-24T07:15:00Z")}})
	got := show(FreeSlots(a, &s, utc("2026-11-24T00:00:00Z"), utc("2026-11-25T00:00:00Z"), now))
	// 06:00 has started; 06:30 and 07:00 touch the appointment.
	if want := "11-24T07:30-08:00"; got != want {
		t.Fatalf("FreeSlots = %s, want %s", got, want)
	}
}

func TestCells(t *testing.T) {
	iv := Interval{utc("2026-11-24T06:00:00Z"), utc("2026-11-24T06:20:00Z")}
	c := Cells(iv)
	if len(c) != 4 || !c[0].Equal(iv.Start) || !c[3].Equal(utc("2026-11-24T06:15:00Z")) {
		t.Fatalf("Cells = %v", c)
	}
}

func TestScheduleFindsLongEntriesAndManyEntries(t *testing.T) {
	now := utc("2026-11-23T00:00:00Z")
	var s Schedule
	day := utc("2026-11-24T00:00:00Z")
	s.Add(Busy{ID: "long", Interval: Interval{day, day.Add(MaxBookingMinute * time.Minute)}})
	for i := range 1000 { // many short entries after it
		st := day.Add(time.Duration(MaxBookingMinute+5*i) * time.Minute)
		s.Add(Busy{ID: "s" + string(rune('a'+i%26)) + time.Duration(i).String(), Interval: Interval{st, st.Add(5 * time.Minute)}})
	}
	late := day.Add((MaxBookingMinute - 5) * time.Minute)
	if b, ok := s.Conflict(Interval{late, late.Add(5 * time.Minute)}, now, ""); !ok || b.ID != "long" {
		t.Fatalf("the last cell of an 8-hour entry: conflict = %v %v, want long", b, ok)
	}
	if s.Len() != 1001 {
		t.Fatalf("Len = %d", s.Len())
	}
	s.Remove("long")
	if _, ok := s.Get("long"); ok || s.Len() != 1000 {
		t.Fatal("Remove(long) kept it")
	}
	if _, ok := s.Conflict(Interval{late, late.Add(5 * time.Minute)}, now, ""); ok {
		t.Fatal("a removed entry still conflicts")
	}
}

// Expired skips its scan until the soonest hold could have lapsed; the
// bound must follow holds added with an earlier expiry, holds confirmed
// (replaced by an appointment) and holds removed.
func TestExpiredFindsEveryLapsedHoldWhateverTheOrder(t *testing.T) {
	now := utc("2026-11-23T00:00:00Z")
	day := utc("2026-11-24T00:00:00Z")
	slot := func(i int) Interval {
		return Interval{day.Add(time.Duration(15*i) * time.Minute), day.Add(time.Duration(15*i+15) * time.Minute)}
	}
	var s Schedule
	hold := func(id string, i int, ttl time.Duration) {
		s.Add(Busy{ID: id, Interval: slot(i), Hold: true, Expires: now.Add(ttl)})
	}
	hold("late", 0, 10*time.Minute)
	hold("soon", 1, time.Minute) // earlier than the hold before it
	hold("mid", 2, 5*time.Minute)
	if exp := s.Expired(now.Add(30 * time.Second)); len(exp) != 0 {
		t.Fatalf("nothing has lapsed, Expired = %v", exp)
	}
	if exp := s.Expired(now.Add(time.Minute)); len(exp) != 1 || exp[0].ID != "soon" {
		t.Fatalf("at 1 min: Expired = %v, want soon", exp)
	}
	s.Remove("soon")
	// "mid" is confirmed: it stays busy but is no longer a hold.
	s.Add(Busy{ID: "mid", Interval: slot(2)})
	if exp := s.Expired(now.Add(6 * time.Minute)); len(exp) != 0 {
		t.Fatalf("a confirmed booking lapsed: Expired = %v", exp)
	}
	hold("again", 3, 7*time.Minute) // added after a scan set the bound later
	if exp := s.Expired(now.Add(7 * time.Minute)); len(exp) != 1 || exp[0].ID != "again" {
		t.Fatalf("at 7 min: Expired = %v, want again", exp)
	}
	s.Remove("again")
	if exp := s.Expired(now.Add(10 * time.Minute)); len(exp) != 1 || exp[0].ID != "late" {
		t.Fatalf("at 10 min: Expired = %v, want late", exp)
	}
	s.Remove("late")
	hold("last", 4, 20*time.Minute) // the first hold after the set was empty
	if exp := s.Expired(now.Add(20 * time.Minute)); len(exp) != 1 || exp[0].ID != "last" {
		t.Fatalf("at 20 min: Expired = %v, want last", exp)
	}
}

// BenchmarkExpiredWithManyHolds is the grain's check on every booking while
// 256 bookings are in flight (their holds not yet lapsed).
func BenchmarkExpiredWithManyHolds(b *testing.B) {
	now := utc("2026-11-23T00:00:00Z")
	day := utc("2026-11-24T00:00:00Z")
	var s Schedule
	for i := range 256 {
		st := day.Add(time.Duration(15*i) * time.Minute)
		s.Add(Busy{ID: fmt.Sprint("h", i), Interval: Interval{st, st.Add(15 * time.Minute)}, Hold: true, Expires: now.Add(time.Minute)})
	}
	b.ResetTimer()
	for range b.N {
		if len(s.Expired(now)) != 0 {
			b.Fatal("a live hold lapsed")
		}
	}
}
