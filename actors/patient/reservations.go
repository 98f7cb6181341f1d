package patient

import (
	"slices"
	"sort"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// Reservations is the time a patient has taken on, by appointment: what
// keeps a patient from being booked twice at once with different doctors.
// It is pure: the grain loads it, asks it, and resolves what it cannot
// decide (a pending entry past its deadline) from the appointment's row.
//
// An entry is confirmed (its appointment holds that time) or pending until
// a deadline (the calendar has not confirmed yet: a booking saga, or the
// new time of a reschedule). A pending entry past its deadline is unknown
// until resolved: its saga may have confirmed or failed.
//
// Entries are kept sorted by start, and the longest entry bounds how far
// back an overlapping one can start, so a check looks only at the entries
// near the time asked about however many a patient holds.
type Reservations struct {
	entries []reservation // sorted by start
	maxSpan time.Duration // no entry is longer (it never shrinks)
}

type reservation struct {
	appointmentID string
	start, end    time.Time
	confirmed     bool
	until         time.Time
}

func (r reservation) overlaps(start, end time.Time) bool {
	return r.start.Before(end) && start.Before(r.end)
}

// LoadReservations builds the patient's reservations from the stored rows.
func LoadReservations(rows []persistence.Reservation) *Reservations {
	rs := &Reservations{}
	for _, row := range rows {
		rs.add(row)
	}
	return rs
}

func (rs *Reservations) add(row persistence.Reservation) {
	a := row.Appointment
	if a != nil && (a.Status == messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED || a.Status == messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN) {
		rs.insert(reservation{appointmentID: row.AppointmentID,
			start: a.GetStart().AsTime(), end: a.GetEnd().AsTime(), confirmed: true})
		if row.Start.Equal(a.GetStart().AsTime()) && row.End.Equal(a.GetEnd().AsTime()) {
			return
		}
		// A reschedule to row's time may still be running.
	} else if a != nil && a.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_HELD {
		return // cancelled, completed, ...: holds nothing
	}
	until := row.PendingUntil
	if a != nil && a.HoldExpiresAt != nil && a.HoldExpiresAt.AsTime().After(until) {
		until = a.HoldExpiresAt.AsTime()
	}
	rs.insert(reservation{appointmentID: row.AppointmentID, start: row.Start, end: row.End, until: until})
}

// insert keeps entries sorted by start.
func (rs *Reservations) insert(r reservation) {
	i := sort.Search(len(rs.entries), func(i int) bool { return rs.entries[i].start.After(r.start) })
	rs.entries = slices.Insert(rs.entries, i, r)
	rs.maxSpan = max(rs.maxSpan, r.end.Sub(r.start))
}

// Conflict returns an appointment other than id whose reservation blocks
// [start, end) at now, and the appointments that might block it but must
// be resolved first (pending past their deadline).
func (rs *Reservations) Conflict(id string, start, end, now time.Time) (blocking string, unresolved []string) {
	// Candidates start before end, and after start-maxSpan: one starting
	// earlier has ended by start.
	hi := sort.Search(len(rs.entries), func(i int) bool { return !rs.entries[i].start.Before(end) })
	earliest := start.Add(-rs.maxSpan)
	for j := hi - 1; j >= 0 && rs.entries[j].start.After(earliest); j-- {
		r := rs.entries[j]
		if !r.overlaps(start, end) || r.appointmentID == id {
			continue
		}
		switch {
		case r.confirmed, now.Before(r.until):
			return r.appointmentID, nil
		default:
			unresolved = append(unresolved, r.appointmentID)
		}
	}
	return "", unresolved
}

// Reserve records a pending reservation of [start, end) for id.
func (rs *Reservations) Reserve(row persistence.Reservation) {
	rs.insert(reservation{appointmentID: row.AppointmentID, start: row.Start, end: row.End, until: row.PendingUntil})
}

// Resolve replaces what is known about id with its appointment's row (nil:
// it was never written, so it holds nothing).
func (rs *Reservations) Resolve(id string, a *messages.AppointmentRecord) {
	rs.Forget(id)
	if a == nil {
		return
	}
	rs.add(persistence.Reservation{AppointmentID: id, Start: a.GetStart().AsTime(), End: a.GetEnd().AsTime(), Appointment: a})
}

// Unsure marks id's entries for resolution before they block anything
// again (the calendar said it changed).
func (rs *Reservations) Unsure(id string) {
	for i := range rs.entries {
		if rs.entries[i].appointmentID == id {
			rs.entries[i].confirmed, rs.entries[i].until = false, time.Time{}
		}
	}
}

// Forget drops every entry of id.
func (rs *Reservations) Forget(id string) {
	kept := rs.entries[:0]
	for _, r := range rs.entries {
		if r.appointmentID != id {
			kept = append(kept, r)
		}
	}
	rs.entries = kept
}

// Prune drops entries that ended before now. Only those that started
// before now can have.
func (rs *Reservations) Prune(now time.Time) {
	started := sort.Search(len(rs.entries), func(i int) bool { return !rs.entries[i].start.Before(now) })
	kept := 0
	for _, r := range rs.entries[:started] {
		if r.end.After(now) {
			rs.entries[kept] = r
			kept++
		}
	}
	if kept < started {
		rs.entries = slices.Delete(rs.entries, kept, started)
	}
}
