package calendar

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Why a booking request is refused. The grain maps each to a typed error:
// ErrSlotTaken to 409 slot-taken, the others to 422.
var (
	// ErrOffGrid: the start or the length is not on the CellMinutes grid.
	ErrOffGrid = fmt.Errorf("a booking must start and end on the %d-minute grid", CellMinutes) // text
	// ErrDuration: the booking is empty or longer than MaxBookingMinute.
	ErrDuration = fmt.Errorf("a booking lasts %d to %d minutes", CellMinutes, MaxBookingMinute) // text
	// ErrInPast: the booking starts before now.
	ErrInPast = errors.New("a booking cannot start in the past") // text
	// ErrOutsideHours: some of the booking falls outside the doctor's working time.
	ErrOutsideHours = errors.New("the booking falls outside the doctor's working hours") // text
	// ErrSlotTaken: some of the booking overlaps an appointment or a live hold.
	ErrSlotTaken = errors.New("the slot is taken") // text
)

// CheckRequest checks a booking of iv against the grid, the clock and the
// doctor's working time. It does not look at other bookings (Schedule does).
func CheckRequest(a *Availability, iv Interval, now time.Time) error {
	grid := time.Duration(CellMinutes) * time.Minute
	if iv.Start.Truncate(grid) != iv.Start || iv.End.Truncate(grid) != iv.End {
		return ErrOffGrid
	}
	if m := iv.Minutes(); !iv.Start.Before(iv.End) || m > MaxBookingMinute {
		return ErrDuration
	}
	if iv.Start.Before(now) {
		return ErrInPast
	}
	if !a.Covers(iv) {
		return ErrOutsideHours
	}
	return nil
}

// Cells returns the start of every grid cell iv covers; the database keeps
// one claim per (doctor, cell).
func Cells(iv Interval) []time.Time {
	grid := time.Duration(CellMinutes) * time.Minute
	var out []time.Time
	for c := iv.Start.UTC(); c.Before(iv.End); c = c.Add(grid) {
		out = append(out, c)
	}
	return out
}

// Busy is a span of a doctor's time that is not free: an appointment, or a
// hold placed while a booking saga runs. A hold stops counting at Expires.
type Busy struct {
	ID string
	Interval
	Hold    bool
	Expires time.Time
}

// Live reports whether b still blocks its time at now.
func (b Busy) Live(now time.Time) bool { return !b.Hold || now.Before(b.Expires) }

// Schedule is what occupies one doctor's time, kept in start order, with
// an index by id and the set of holds, so that a calendar with thousands of
// appointments decides a booking in logarithmic time.
//
// Invariant: no entry is longer than MaxBookingMinute (CheckRequest refuses
// longer bookings), which bounds how far back Conflict looks.
//
// Invariant: soonest is at or before the expiry of every hold (Add lowers
// it, Expired recomputes it), so Expired skips its scan while now is before
// soonest. The grain asks on every booking and every write; without the
// bound each ask walked all the holds in flight.
type Schedule struct {
	items   []Busy
	start   map[string]time.Time // id -> start of its entry
	holds   map[string]bool
	soonest time.Time
}

// search is the index of the first entry starting at or after t.
func (s *Schedule) search(t time.Time) int {
	return sort.Search(len(s.items), func(i int) bool { return !s.items[i].Start.Before(t) })
}

// Add records b (replacing any entry with the same ID).
func (s *Schedule) Add(b Busy) {
	s.Remove(b.ID)
	if s.start == nil {
		s.start, s.holds = map[string]time.Time{}, map[string]bool{}
	}
	i := s.search(b.Start)
	s.items = append(s.items, Busy{})
	copy(s.items[i+1:], s.items[i:])
	s.items[i] = b
	s.start[b.ID] = b.Start
	if b.Hold {
		if len(s.holds) == 0 || b.Expires.Before(s.soonest) {
			s.soonest = b.Expires
		}
		s.holds[b.ID] = true
	}
}

// find is the index of the entry with id, or -1.
func (s *Schedule) find(id string) int {
	st, ok := s.start[id]
	if !ok {
		return -1
	}
	for i := s.search(st); i < len(s.items) && s.items[i].Start.Equal(st); i++ {
		if s.items[i].ID == id {
			return i
		}
	}
	return -1
}

// Remove forgets the entry with id, if any.
func (s *Schedule) Remove(id string) {
	if i := s.find(id); i >= 0 {
		s.items = append(s.items[:i], s.items[i+1:]...)
		delete(s.start, id)
		delete(s.holds, id)
	}
}

// Get returns the entry with id.
func (s *Schedule) Get(id string) (Busy, bool) {
	if i := s.find(id); i >= 0 {
		return s.items[i], true
	}
	return Busy{}, false
}

// Len is the number of entries.
func (s *Schedule) Len() int { return len(s.items) }

// Conflict returns a live entry overlapping iv, other than the one with
// ignoreID (a reschedule does not conflict with itself).
func (s *Schedule) Conflict(iv Interval, now time.Time, ignoreID string) (Busy, bool) {
	for i := s.search(iv.Start.Add(-MaxBookingMinute * time.Minute)); i < len(s.items); i++ {
		b := s.items[i]
		if !b.Start.Before(iv.End) {
			break
		}
		// The window starts MaxBookingMinute early, so most entries end
		// before iv: the time test goes first, the id compare last.
		if b.Overlaps(iv) && b.Live(now) && b.ID != ignoreID {
			return b, true
		}
	}
	return Busy{}, false
}

// Expired returns the holds that have lapsed at now.
func (s *Schedule) Expired(now time.Time) []Busy {
	if len(s.holds) == 0 || now.Before(s.soonest) {
		return nil
	}
	var out []Busy
	first := true
	for id := range s.holds {
		b, ok := s.Get(id)
		switch {
		case !ok:
		case !b.Live(now):
			out = append(out, b)
		case first || b.Expires.Before(s.soonest):
			s.soonest, first = b.Expires, false
		}
	}
	return out
}

// FreeSlots is the doctor's slots in [from, to) that no live entry touches
// and that have not started by now.
func FreeSlots(a *Availability, s *Schedule, from, to, now time.Time) []Interval {
	var out []Interval
	for _, slot := range a.Slots(from, to) {
		if slot.Start.Before(now) {
			continue
		}
		if _, taken := s.Conflict(slot, now, ""); !taken {
			out = append(out, slot)
		}
	}
	return out
}
