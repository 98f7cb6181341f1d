package persistence_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A write's audit events are written with it, and only if it commits; a
// drain chains them once, in the order they were written, through the
// shard's fence: a stale drain leaves them waiting.
func TestPendingAuditIsWrittenWithItsWriteAndChainedOnce(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	event := func(action messages.AuditAction) *messages.AuditEvent {
		return &messages.AuditEvent{OccurredAt: timestamppb.Now(), Action: action.Name(), Outcome: messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS}
	}
	first := persistence.WithAudit(ctx, persistence.PendingAudit{Shard: 0, Event: event(messages.AuditAction_AUDIT_ACTION_CREATE)})
	if _, _, err := db.RegisterPatient(first, "a", testMaster(t), newPatient(), nil, &messages.PatientRegistered{}); err != nil {
		t.Fatal(err)
	}
	// A write that fails writes no audit event.
	failed := persistence.WithAudit(ctx, persistence.PendingAudit{Shard: 0, Event: event(messages.AuditAction_AUDIT_ACTION_UPDATE)})
	if _, _, err := db.RegisterPatient(failed, "a", testMaster(t), newPatient(), nil, &messages.PatientRegistered{}); !errors.Is(err, persistence.ErrIDNPTaken) {
		t.Fatalf("a second registration of the IDNP = %v", err)
	}
	second := persistence.WithAudit(ctx, persistence.PendingAudit{Shard: 0, Event: event(messages.AuditAction_AUDIT_ACTION_READ)})
	p := newPatient()
	p.Idnp = "0010000000001"
	if _, _, err := db.RegisterPatient(second, "a", testMaster(t), p, nil, &messages.PatientRegistered{}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d pending events (%v), want the two committed writes'", n, err)
	}

	chain := func(seq int64) func([][]byte) ([]persistence.AuditRow, error) {
		return func(events [][]byte) ([]persistence.AuditRow, error) {
			var out []persistence.AuditRow
			for i, b := range events {
				var e messages.AuditEvent
				if err := proto.Unmarshal(b, &e); err != nil {
					return nil, err
				}
				out = append(out, persistence.AuditRow{Shard: 0, Seq: seq + int64(i) + 1, OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
					Action: e.Action, Outcome: "success", PrevHash: []byte{}, Hash: []byte{byte(i)}})
			}
			return out, nil
		}
	}
	stale, err := db.Claim(ctx, persistence.AuditKind, "shard-0", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Claim(ctx, persistence.AuditKind, "shard-0", "b"); err != nil {
		t.Fatal(err)
	}
	live, err := db.Claim(ctx, persistence.AuditKind, "shard-0", "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.AppendAuditDraining(ctx, stale, 0, nil, 10, time.Time{}, chain(0)); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("a stale drain = %v, want ErrFenced", err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after a stale drain %d pending events (%v), want both still waiting", n, err)
	}
	drained, err := db.AppendAuditDraining(ctx, live, 0, nil, 10, time.Time{}, chain(0))
	if err != nil || len(drained) != 2 || drained[0].Action != "create" || drained[1].Action != "read" {
		t.Fatalf("drain = %+v, %v; want create then read", drained, err)
	}
	again, err := db.AppendAuditDraining(ctx, live, 0, nil, 10, time.Time{}, chain(2))
	if err != nil || len(again) != 0 {
		t.Fatalf("a second drain = %+v, %v; want nothing left", again, err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE shard = 0`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d chained events (%v), want 2", n, err)
	}
}
