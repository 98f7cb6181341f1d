package calendar

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func r(s, e string) Range {
	a, err := ParseClock(s)
	if err != nil {
		panic(err)
	}
	b, err := ParseClock(e)
	if err != nil {
		panic(err)
	}
	return Range{a, b}
}

// every day the same ranges
func daily(zone *time.Location, slot int, rs ...Range) *Availability {
	a := &Availability{Zone: zone, SlotMinutes: slot}
	for d := range a.Weekly {
		a.Weekly[d] = rs
	}
	return a
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func show(ivs []Interval) string {
	var b strings.Builder
	for _, iv := range ivs {
		fmt.Fprintf(&b, "%s-%s ", iv.Start.UTC().Format("01-02T15:04"), iv.End.UTC().Format("15:04"))
	}
	return strings.TrimSpace(b.String())
}

func TestParseClock(t *testing.T) {
	for in, want := range map[string]Clock{"00:00": 0, "08:30": 510, "23:55": 1435, "24:00": 1440} {
		if got, err := ParseClock(in); err != nil || got != want {
			t.Errorf("ParseClock(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"8:30", "24:05", "12:60", "ab:cd", "", "12-30", "-1:00"} {
		if _, err := ParseClock(in); err == nil {
			t.Errorf("ParseClock(%q) succeeded", in)
		}
	}
}

// TestDaylightSavingChisinau: in 2026 Moldova moves to summer time on
// 29 March (02:00 EET becomes 03:00 EEST) and back on 25 October (03:00
// EEST becomes 02:00 EET).
func TestDaylightSavingChisinau(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	tests := []struct {
		name     string
		a        *Availability
		from, to string
		want     string // slots, UTC
	}{
		{"day hours the day before spring forward (EET, UTC+2)", daily(zone, 60, r("08:00", "10:00")),
			"2026-03-28T00:00:00Z", "2026-03-28T23:00:00Z", "03-28T06:00-07:00 03-28T07:00-08:00"},
		{"day hours on spring-forward day (EEST, UTC+3)", daily(zone, 60, r("08:00", "10:00")),
			"2026-03-29T00:00:00Z", "2026-03-29T20:00:00Z", "03-29T05:00-06:00 03-29T06:00-07:00"},
		{"a night range loses the skipped hour", daily(zone, 60, r("00:00", "05:00")),
			"2026-03-28T21:00:00Z", "2026-03-29T03:00:00Z", "03-28T22:00-23:00 03-28T23:00-00:00 03-29T00:00-01:00 03-29T01:00-02:00"},
		{"a range starting in the gap starts at the change", daily(zone, 30, r("02:30", "04:00")),
			"2026-03-28T22:00:00Z", "2026-03-29T02:00:00Z", "03-29T00:00-00:30 03-29T00:30-01:00"},
		{"day hours on fall-back day (EET again, UTC+2)", daily(zone, 60, r("08:00", "10:00")),
			"2026-10-25T00:00:00Z", "2026-10-25T20:00:00Z", "10-25T06:00-07:00 10-25T07:00-08:00"},
		{"a night range gains the repeated hour", daily(zone, 60, r("00:00", "05:00")),
			"2026-10-24T20:00:00Z", "2026-10-25T04:00:00Z", "10-24T21:00-22:00 10-24T22:00-23:00 10-24T23:00-00:00 10-25T00:00-01:00 10-25T01:00-02:00 10-25T02:00-03:00"},
	}
	for _, tt := range tests {
		if got := show(tt.a.Slots(utc(tt.from), utc(tt.to))); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestExceptionsAndWeekdays(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	a := &Availability{Zone: zone, SlotMinutes: 30}
	a.Weekly[time.Monday] = []Range{r("08:00", "09:00"), r("14:00", "15:00")}
	a.Weekly[time.Tuesday] = []Range{r("10:00", "11:00")}
	a.Exceptions = map[string][]Range{
		"2026-11-30": nil,                   // Monday off
		"2026-12-05": {r("09:00", "10:00")}, // extra Saturday hours
		"2026-12-01": {r("10:30", "11:00")}, // a shorter Tuesday
	}
	got := show(a.Slots(utc("2026-11-23T00:00:00Z"), utc("2026-12-07T00:00:00Z")))
	want := "11-23T06:00-06:30 11-23T06:30-07:00 11-23T12:00-12:30 11-23T12:30-13:00 11-24T08:00-08:30 11-24T08:30-09:00 " +
		"12-01T08:30-09:00 12-05T07:00-07:30 12-05T07:30-08:00"
	if got != want {
		t.Fatalf("slots:\n got %s\nwant %s", got, want)
	}
}

func TestCovers(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	a := daily(zone, 30, r("08:00", "12:00"), r("12:00", "13:00"), r("14:00", "16:00"))
	tests := []struct {
		from, to string
		want     bool
	}{
		{"2026-11-23T06:00:00Z", "2026-11-23T06:30:00Z", true},  // 08:00-08:30
		{"2026-11-23T09:30:00Z", "2026-11-23T10:30:00Z", true},  // 11:30-12:30 across touching ranges
		{"2026-11-23T10:30:00Z", "2026-11-23T12:30:00Z", false}, // 12:30-14:30 through the gap
		{"2026-11-23T05:30:00Z", "2026-11-23T06:30:00Z", false}, // starts before work
		{"2026-11-23T13:45:00Z", "2026-11-23T14:15:00Z", false}, // ends after work
	}
	for _, tt := range tests {
		iv := Interval{utc(tt.from), utc(tt.to)}
		if got := a.Covers(iv); got != tt.want {
			t.Errorf("Covers(%s) = %v, want %v", show([]Interval{iv}), got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	tests := []struct {
		a    *Availability
		want string
	}{
		{daily(zone, 30, r("08:00", "12:00")), ""},
		{daily(nil, 30), "time_zone"},
		{daily(zone, 7), "slot_minutes"},
		{daily(zone, 0), "slot_minutes"},
		{&Availability{Zone: zone, SlotMinutes: 30, Weekly: [7][]Range{time.Monday: {r("12:00", "08:00")}}}, "weekly.monday"},
		{&Availability{Zone: zone, SlotMinutes: 30, Weekly: [7][]Range{time.Friday: {r("08:00", "12:00"), r("11:00", "13:00")}}}, "weekly.friday"},
		{&Availability{Zone: zone, SlotMinutes: 30, Weekly: [7][]Range{time.Sunday: {r("08:03", "12:00")}}}, "weekly.sunday"},
		{&Availability{Zone: zone, SlotMinutes: 30, Exceptions: map[string][]Range{"2026-02-30": nil}}, "exceptions.2026-02-30"},
	}
	for _, tt := range tests {
		var got []string
		for _, e := range tt.a.Validate() {
			got = append(got, e.Field)
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("Validate() fields = %v, want %q", got, tt.want)
		}
	}
}
