package audit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func event(patient string) *messages.AuditEvent {
	return &messages.AuditEvent{OccurredAt: timestamppb.Now(), Caller: &messages.Caller{Subject: "doctor-1"},
		Action: messages.AuditAction_AUDIT_ACTION_READ.Name(), ResourceType: "patient", ResourceId: patient, PatientId: patient,
		Outcome: messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS}
}

func openChain(t *testing.T, db *persistence.DB, member string) audit.Recorder {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	chain := audit.NewChain(audit.Deps{DB: db})
	if err := chain.Open(context.Background(), system, member, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	return audit.Recorder{Chain: chain, Timeout: 5 * time.Second}
}

// Each member incarnation appends to a chain of its own, so that no member
// waits on another's; what a chain left pending, and what was written
// without a chain, is adopted by a live one; every chain verifies.
func TestEachMemberAppendsToAChainOfItsOwn(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)

	// Nothing is recorded before the chain is open: fail closed.
	unopened := audit.Recorder{Chain: audit.NewChain(audit.Deps{DB: db})}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := unopened.Record(short, event("p0")); !errors.Is(err, audit.ErrNoChain) {
		t.Fatalf("record before open = %v, want ErrNoChain", err)
	}
	if err := (audit.Recorder{}).Record(ctx, event("p0")); !errors.Is(err, audit.ErrNoChain) {
		t.Fatalf("record without a chain = %v, want ErrNoChain", err)
	}

	a, b := openChain(t, db, "member-a"), openChain(t, db, "member-b")
	if a.Shard() == b.Shard() || a.Shard() < 0 || b.Shard() < 0 {
		t.Fatalf("chains %d and %d: want two distinct shards", a.Shard(), b.Shard())
	}
	// Concurrent appends on both chains: each group-commits its own.
	errs := make(chan error, 200)
	for range 100 {
		go func() { errs <- a.Record(ctx, event("pa"), event("pa")) }()
		go func() { errs <- b.Record(ctx, event("pb")) }()
	}
	for range 200 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	count := func(shard int32) int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE shard = $1`, shard).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count(a.Shard()) != 200 || count(b.Shard()) != 100 {
		t.Fatalf("rows: chain a %d (want 200), chain b %d (want 100)", count(a.Shard()), count(b.Shard()))
	}

	// A write's event for chain b (its member then died) and one written
	// by an admin command without a chain: chain a adopts both once they
	// have waited, and only then.
	ctxB := persistence.WithAudit(ctx, b.Pending(event("pb")))
	if _, err := db.CreateClinic(ctxB, "test", clinic(), nil, &messages.ClinicCreated{}); err != nil {
		t.Fatal(err)
	}
	ctxAdmin := persistence.WithAudit(ctx, (audit.Recorder{}).Pending(event("pc")))
	if _, err := db.CreateClinic(ctxAdmin, "test", clinic(), nil, &messages.ClinicCreated{}); err != nil {
		t.Fatal(err)
	}
	drainer := audit.Drainer{DB: db, Recorder: a, Every: time.Hour}
	if n := drainer.Pass(ctx); n != 0 {
		t.Fatalf("a pass adopted %d chains' events that had not waited", n)
	}
	drainer.Every = time.Nanosecond
	if n := drainer.Pass(ctx); n != 2 {
		t.Fatalf("a pass found %d chains with waiting events, want 2 (b's and the unchained)", n)
	}
	if count(a.Shard()) != 202 || count(b.Shard()) != 100 {
		t.Fatalf("after adoption: chain a %d rows (want 202), chain b %d (want 100)", count(a.Shard()), count(b.Shard()))
	}
	var waiting int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&waiting); err != nil || waiting != 0 {
		t.Fatalf("pending after adoption: %d, %v", waiting, err)
	}

	// Another process claiming chain a's fence (it never should): a's next
	// append fails, and the one after re-claims the chain, reads its head
	// and goes on, so the chain stays linear.
	if _, err := db.ClaimAuditChain(ctx, a.Shard(), "intruder"); err != nil {
		t.Fatal(err)
	}
	if err := a.Record(ctx, event("pa")); err == nil {
		t.Fatal("an append through a fence another process claimed succeeded")
	}
	if err := a.Record(ctx, event("pa")); err != nil {
		t.Fatalf("the append after re-claiming: %v", err)
	}
	shards, events, err := audit.VerifyTrail(ctx, db, func(int32, int64) {})
	if err != nil || shards != 2 || events != 303 {
		t.Fatalf("verify: %d chains, %d events, %v; want 2, 303, intact", shards, events, err)
	}
	chains, err := db.AuditChains(ctx)
	if err != nil || len(chains) != 2 || chains[0].Member != "member-a" || chains[1].Member != "member-b" {
		t.Fatalf("registered chains: %+v, %v", chains, err)
	}
}

func clinic() *messages.ClinicRecord {
	now := timestamppb.Now()
	return &messages.ClinicRecord{Id: uuid.NewString(), Name: "Clinic", TimeZone: "Europe/Chisinau", Version: 1, CreatedAt: now, UpdatedAt: now}
}
