package calendar_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A booking's batch for doctor at start, with its audit event.
func bookingBatch(doctor string, start time.Time, shard int32) *persistence.CalendarBatch {
	end := start.Add(15 * time.Minute)
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := &messages.AppointmentRecord{Id: uuid.NewString(), DoctorId: doctor, PatientId: uuid.NewString(),
		Start: timestamppb.New(start), End: timestamppb.New(end), Status: messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED,
		Reason: "checkup", BookedBy: "desk-1", Version: 1, CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now)}
	var cells []time.Time
	for c := start; c.Before(end); c = c.Add(5 * time.Minute) {
		cells = append(cells, c)
	}
	return &persistence.CalendarBatch{DoctorID: doctor,
		Inserts: []persistence.NewAppointment{{Record: a, Fingerprint: []byte("fp"), Cells: cells}},
		Audit: []persistence.PendingAudit{{Shard: shard, Event: &messages.AuditEvent{OccurredAt: timestamppb.Now(),
			Action: messages.AuditAction_AUDIT_ACTION_CREATE.Name(), ResourceId: a.Id, Outcome: messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS}}}}
}

// The committer writes what grains submit, chained onto its own chain in
// the groups' transactions; a fenced batch is written alone and hears
// ErrFenced, and what it counts says so.
func TestTheCommitterChainsWhatItWritesAndCountsWhatItWroteAlone(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	w, err := audit.OpenWriter(ctx, db, "node-a", "committer-test")
	if err != nil {
		t.Fatal(err)
	}
	c := calendar.NewCommitter(db, 0, nil)
	defer c.Close()
	c.UseChain(w)
	start := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)

	submit := func(doctors []string, fences []persistence.Fence, at time.Time) []persistence.CalendarResult {
		out := make([]persistence.CalendarResult, len(doctors))
		var wg sync.WaitGroup
		for i := range doctors {
			wg.Add(1)
			err := c.Submit(time.Now().Add(5*time.Second), fences[i], bookingBatch(doctors[i], at, w.Shard()), func(r persistence.CalendarResult) {
				out[i] = r
				wg.Done()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		return out
	}
	var doctors []string
	var fences []persistence.Fence
	for range 5 {
		d, f := pgtest.Doctor(t, db)
		doctors, fences = append(doctors, d), append(fences, f)
	}
	for i, r := range submit(doctors, fences, start) {
		if r.Err != nil || r.Pending {
			t.Fatalf("batch %d = %+v, want written, its audit chained", i, r)
		}
	}
	var chained, pending int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events WHERE shard = $1), (SELECT count(*) FROM audit_pending)`,
		w.Shard()).Scan(&chained, &pending); err != nil || chained != 5 || pending != 0 {
		t.Fatalf("%d audit rows chained, %d pending (%v); want 5 and none", chained, pending, err)
	}
	groups, batches, alone := c.Counts()
	if groups < 1 || groups > 5 || batches != 5 || alone != 0 {
		t.Fatalf("counts: %d groups, %d batches, %d alone; want 5 batches in 1-5 groups, none alone", groups, batches, alone)
	}

	// Another activation claims doctor 0: its next batch is refused, alone.
	if _, err := db.Claim(ctx, persistence.CalendarKind, doctors[0], "node-b"); err != nil {
		t.Fatal(err)
	}
	res := submit(doctors[:1], fences[:1], start.Add(time.Hour))
	if !errors.Is(res[0].Err, persistence.ErrFenced) {
		t.Fatalf("the stale activation's batch = %+v, want ErrFenced", res[0])
	}
	if _, batches, alone := c.Counts(); batches != 6 || alone != 1 {
		t.Fatalf("after the fenced batch: %d batches, %d alone; want 6 and 1", batches, alone)
	}
	if _, _, err := audit.VerifyTrail(ctx, db, func(int32, int64) {}); err != nil {
		t.Fatalf("the trail does not verify: %v", err)
	}
}
