package patient

import (
	"fmt"
	"math/rand/v2"
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

// The sorted index finds exactly the overlaps a scan of every entry finds,
// with entries of mixed lengths and after pruning.
func TestReservationsIndexAgreesWithAFullScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	slot := func() time.Time { return now.Add(time.Duration(rng.IntN(10*24*12)) * 5 * time.Minute) }
	length := func() time.Duration { return time.Duration(1+rng.IntN(48)) * 5 * time.Minute }
	type span struct {
		id         string
		start, end time.Time
	}
	var all []span
	rs := LoadReservations(nil)
	for i := range 600 {
		s := span{id: fmt.Sprintf("a%d", i), start: slot()}
		s.end = s.start.Add(length())
		all = append(all, s)
		rs.Reserve(persistence.Reservation{AppointmentID: s.id, Start: s.start, End: s.end, PendingUntil: now.Add(time.Hour)})
	}
	check := func(at time.Time) {
		for range 2000 {
			start := slot()
			end := start.Add(length())
			id := all[rng.IntN(len(all))].id
			want := false
			for _, s := range all {
				want = want || (s.id != id && s.end.After(at) && s.start.Before(end) && start.Before(s.end))
			}
			// Pending past their deadline at the second check: unresolved then.
			if got, unresolved := rs.Conflict(id, start, end, at); (got != "" || len(unresolved) > 0) != want {
				t.Fatalf("Conflict(%s, %v-%v) = %q, %v; a full scan says overlap = %v", id, start, end, got, unresolved, want)
			}
		}
	}
	check(now)
	rs.Prune(now.Add(5 * 24 * time.Hour))
	check(now.Add(5 * 24 * time.Hour))
}

// A patient holding many appointments (the booking benchmark's 100 patients
// gather hundreds each): a check costs about the same as with a few.
func BenchmarkReservationsConflict(b *testing.B) {
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			rs := LoadReservations(nil)
			for i := range n {
				start := now.Add(time.Duration(i) * 30 * time.Minute)
				rs.Reserve(persistence.Reservation{AppointmentID: fmt.Sprintf("%036d", i), Start: start, End: start.Add(15 * time.Minute),
					PendingUntil: now.Add(time.Hour)})
			}
			id := fmt.Sprintf("%036d", n)
			for i := 0; b.Loop(); i++ {
				start := now.Add(time.Duration(i%n)*30*time.Minute + 15*time.Minute)
				if blocking, _ := rs.Conflict(id, start, start.Add(15*time.Minute), now); blocking != "" {
					b.Fatal("a free gap was found taken")
				}
			}
		})
	}
}
