package patient

import (
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestReservationsDecideOverlaps(t *testing.T) {
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return now.Add(time.Duration(h) * time.Hour) }
	appt := func(id string, status messages.AppointmentStatus, start, end time.Time) *messages.AppointmentRecord {
		return &messages.AppointmentRecord{Id: id, Status: status, Start: timestamppb.New(start), End: timestamppb.New(end)}
	}
	rs := LoadReservations([]persistence.Reservation{
		// booked at 10-11
		{AppointmentID: "booked", Start: at(2), End: at(3), PendingUntil: now.Add(-time.Hour),
			Appointment: appt("booked", messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, at(2), at(3))},
		// cancelled at 12-13: holds nothing
		{AppointmentID: "cancelled", Start: at(4), End: at(5), PendingUntil: now.Add(time.Hour),
			Appointment: appt("cancelled", messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED, at(4), at(5))},
		// a saga in flight at 14-15 (no appointment row yet)
		{AppointmentID: "pending", Start: at(6), End: at(7), PendingUntil: now.Add(time.Minute)},
		// a saga that ended long ago without a row: unknown until resolved
		{AppointmentID: "stale", Start: at(8), End: at(9), PendingUntil: now.Add(-time.Minute)},
	})
	check := func(id string, from, to time.Time, wantBlock string, wantUnresolved int) {
		t.Helper()
		b, u := rs.Conflict(id, from, to, now)
		if b != wantBlock || len(u) != wantUnresolved {
			t.Fatalf("Conflict(%s, %v-%v) = %q, %v; want %q and %d unresolved", id, from, to, b, u, wantBlock, wantUnresolved)
		}
	}
	check("new", at(2), at(3), "booked", 0)
	check("booked", at(2), at(3), "", 0) // an appointment does not block its own reschedule
	check("new", at(4), at(5), "", 0)
	check("new", at(6), at(7), "pending", 0)
	check("new", at(8), at(9), "", 1)
	rs.Resolve("stale", nil) // the calendar never wrote it
	check("new", at(8), at(9), "", 0)
	rs.Resolve("pending", appt("pending", messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, at(6), at(7)))
	check("new", at(6), at(7), "pending", 0)
	rs.Unsure("booked") // the calendar says it changed: re-read before it blocks again
	check("new", at(2), at(3), "", 1)
	rs.Prune(at(10))
	check("new", at(2), at(9), "", 0)
}
