// Package calendar is a doctor's calendar: weekly working hours in the
// doctor's time zone with dated exceptions, the free slots they make, and
// the rules a booking must pass. It is pure (no I/O, the clock is passed
// in); the calendar grain around it loads, fences, persists and replies.
//
// Times: working hours are local wall times in the doctor's IANA zone;
// everything else is an absolute instant. Local times turn into instants per
// date, so a day's hours stay right across daylight-saving changes. A local
// time that does not exist (the spring-forward gap) moves to the first
// instant after the gap; one that happens twice (fall-back) means its first
// occurrence. Slots step through absolute time, so a night range over a
// change is an hour shorter or longer, as the clock on the wall says.
package calendar

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
)

// CellMinutes is the booking grid: every booking starts and ends on it, and
// the database claims one row per cell (unique per doctor), which is what
// makes a double booking impossible to store.
const CellMinutes = 5

// Limits on availability.
const (
	MinSlotMinutes   = CellMinutes
	MaxSlotMinutes   = 240
	MaxRangesPerDay  = 12
	MaxExceptions    = 400
	MaxBookingMinute = 8 * 60
)

// Clock is a local wall time in minutes after midnight: 0 (00:00) to 1440 (24:00).
type Clock int

// ParseClock reads "HH:MM" (24:00 allowed, as the end of a day).
func ParseClock(s string) (Clock, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s) // text
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time of day", s) // text
	}
	return Clock(hh*60 + mm), nil
}

func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", int(c)/60, int(c)%60) }

// Range is a local working range [Start, End) of one day.
type Range struct{ Start, End Clock }

// Interval is an absolute half-open span [Start, End).
type Interval struct{ Start, End time.Time }

// Overlaps reports whether two intervals share any instant.
func (iv Interval) Overlaps(o Interval) bool { return iv.Start.Before(o.End) && o.Start.Before(iv.End) }

// Contains reports whether o lies wholly inside iv.
func (iv Interval) Contains(o Interval) bool {
	return !o.Start.Before(iv.Start) && !o.End.After(iv.End)
}

// Minutes is the interval's length in whole minutes.
// Has reports whether t falls in [Start, End).
func (iv Interval) Has(t time.Time) bool { return !t.Before(iv.Start) && t.Before(iv.End) }

// Minutes is the length of iv in whole minutes.
func (iv Interval) Minutes() int { return int(iv.End.Sub(iv.Start) / time.Minute) }

// Availability is a doctor's working time.
type Availability struct {
	Zone        *time.Location
	SlotMinutes int
	// Weekly holds the ranges of each weekday, indexed by time.Weekday.
	Weekly [7][]Range
	// Exceptions replace the weekly ranges on a date ("YYYY-MM-DD"); an
	// empty list is a day off.
	Exceptions map[string][]Range
}

// Validate lists what is wrong with a; nil when it is valid.
func (a *Availability) Validate() validate.Errors {
	var errs validate.Errors
	add := errs.Add
	if a.Zone == nil {
		add("time_zone", "is required")
	}
	if a.SlotMinutes < MinSlotMinutes || a.SlotMinutes > MaxSlotMinutes || a.SlotMinutes%CellMinutes != 0 {
		add("slot_minutes", fmt.Sprintf("must be a multiple of %d from %d to %d", CellMinutes, MinSlotMinutes, MaxSlotMinutes))
	}
	for d := time.Sunday; d <= time.Saturday; d++ {
		errs = append(errs, validRanges("weekly."+strings.ToLower(d.String()), a.Weekly[d])...)
	}
	if len(a.Exceptions) > MaxExceptions {
		add("exceptions", fmt.Sprintf("must list at most %d dates", MaxExceptions))
	}
	for date, rs := range a.Exceptions {
		if _, err := time.Parse(time.DateOnly, date); err != nil {
			add("exceptions."+date, "is not a date YYYY-MM-DD")
			continue
		}
		errs = append(errs, validRanges("exceptions."+date, rs)...)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
	return errs
}

func validRanges(field string, rs []Range) validate.Errors {
	one := func(msg string) validate.Errors { return validate.Errors{{Field: field, Message: msg}} }
	if len(rs) > MaxRangesPerDay {
		return one(fmt.Sprintf("must have at most %d ranges", MaxRangesPerDay))
	}
	sorted := append([]Range(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	for i, r := range sorted {
		switch {
		case r.Start < 0 || r.End > 24*60 || r.Start >= r.End:
			return one(fmt.Sprintf("range %s-%s must start before it ends, within the day", r.Start, r.End))
		case r.Start%CellMinutes != 0 || r.End%CellMinutes != 0:
			return one(fmt.Sprintf("range %s-%s must be on the %d-minute grid", r.Start, r.End, CellMinutes))
		case i > 0 && r.Start < sorted[i-1].End:
			return one(fmt.Sprintf("ranges %s-%s and %s-%s overlap", sorted[i-1].Start, sorted[i-1].End, r.Start, r.End))
		}
	}
	return nil
}

// rangesOn returns the working ranges of a local date.
func (a *Availability) rangesOn(date time.Time) []Range {
	if rs, ok := a.Exceptions[date.Format(time.DateOnly)]; ok {
		return rs
	}
	return a.Weekly[date.Weekday()]
}

// localInstant is the instant the wall clock in loc shows c on date (y, m, d).
func localInstant(y int, m time.Month, d int, c Clock, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, int(c), 0, 0, loc)
	if got := Clock(t.Hour()*60 + t.Minute()); c < 24*60 && got != c {
		// c falls in a spring-forward gap: start at the change itself.
		start, _ := t.ZoneBounds()
		if !start.IsZero() && start.After(t.Add(-2*time.Hour)) {
			return start
		}
	}
	return t
}

// Windows returns the working intervals that overlap [from, to), whole
// (not clipped), in time order.
func (a *Availability) Windows(from, to time.Time) []Interval {
	if a.Zone == nil || !from.Before(to) {
		return nil
	}
	var out []Interval
	day := from.In(a.Zone)
	day = time.Date(day.Year(), day.Month(), day.Day()-1, 12, 0, 0, 0, a.Zone)
	last := to.In(a.Zone)
	last = time.Date(last.Year(), last.Month(), last.Day(), 12, 0, 0, 0, a.Zone)
	for ; !day.After(last); day = time.Date(day.Year(), day.Month(), day.Day()+1, 12, 0, 0, 0, a.Zone) {
		y, m, d := day.Date()
		for _, r := range a.rangesOn(day) {
			w := Interval{localInstant(y, m, d, r.Start, a.Zone), localInstant(y, m, d, r.End, a.Zone)}
			if w.Start.Before(w.End) && w.Overlaps(Interval{from, to}) {
				out = append(out, Interval{w.Start.UTC(), w.End.UTC()})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Slots returns the slots of SlotMinutes that start in [from, to) and fit
// wholly in a working window, in time order.
func (a *Availability) Slots(from, to time.Time) []Interval {
	step := time.Duration(a.SlotMinutes) * time.Minute
	if step <= 0 {
		return nil
	}
	var out []Interval
	for _, w := range a.Windows(from, to) {
		for s := w.Start; !s.Add(step).After(w.End); s = s.Add(step) {
			if !s.Before(from) && s.Before(to) {
				out = append(out, Interval{s, s.Add(step)})
			}
		}
	}
	return out
}

// Covers reports whether iv lies wholly inside working time; ranges that
// touch (08:00-12:00 and 12:00-16:00) count as one.
func (a *Availability) Covers(iv Interval) bool {
	var merged []Interval
	for _, w := range a.Windows(iv.Start.Add(-24*time.Hour), iv.End.Add(24*time.Hour)) {
		if n := len(merged); n > 0 && !w.Start.After(merged[n-1].End) {
			if w.End.After(merged[n-1].End) {
				merged[n-1].End = w.End
			}
			continue
		}
		merged = append(merged, w)
	}
	for _, w := range merged {
		if w.Contains(iv) {
			return true
		}
	}
	return false
}
