package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/caregrid/caregrid/persistence"
)

// BrokenError says which shard's chain or checkpoints do not hold.
type BrokenError struct {
	Shard int32
	Err   error
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit trail broken: shard %d: %v", e.Shard, e.Err)
}

func (e *BrokenError) Unwrap() error { return e.Err }

// VerifyTrail checks every shard's hash chain from its first row, and the
// chain against its signed checkpoints: a checkpoint whose signature does
// not verify, a checkpointed hash the chain no longer has (a rewrite), a
// chain shorter than its last checkpoint (a cut tail). It returns the
// shards and events checked; a chain that does not hold is a *BrokenError,
// any other error means the check could not finish.
func VerifyTrail(ctx context.Context, db *persistence.DB, report func(shard int32, rows int64)) (int, int64, error) {
	shards, err := db.AuditShards(ctx)
	if err != nil {
		return 0, 0, err
	}
	signedShards, err := db.CheckpointShards(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range signedShards {
		if !slices.Contains(shards, s) {
			shards = append(shards, s) // every row of a signed shard deleted
		}
	}
	keys := map[string][]byte{}
	ks, err := db.AuditKeys(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, k := range ks {
		keys[k.ID] = k.Public
	}
	var total int64
	for _, s := range shards {
		cps, err := db.Checkpoints(ctx, s)
		if err != nil {
			return len(shards), total, err
		}
		signed := map[int64]bool{}
		for _, cp := range cps {
			signed[cp.Seq] = true
		}
		hashes := map[int64][]byte{}
		var head int64
		v := &Verifier{Shard: s}
		err = db.ScanAuditChain(ctx, s, func(r persistence.AuditRow) error {
			if signed[r.Seq] {
				hashes[r.Seq] = r.Hash
			}
			head = r.Seq
			return v.Next(r)
		})
		if err != nil {
			return len(shards), total, &BrokenError{Shard: s, Err: err}
		}
		if err := CheckCheckpoints(s, cps, keys, hashes, head); err != nil {
			return len(shards), total, &BrokenError{Shard: s, Err: err}
		}
		report(s, v.Rows)
		total += v.Rows
	}
	return len(shards), total, nil
}

// TrailChecker checks the whole trail (VerifyTrail) on a schedule and on
// demand, and records each check in audit_verifications, where the
// console and the metrics read it. Every member runs one; a check starts
// only when none is running (the table says), and on the schedule only
// when the last one is older than Every, so a cluster checks about once
// per Every whatever its size.
type TrailChecker struct {
	DB     *persistence.DB
	Member string
	// Every is the schedule (0: DefaultTrailCheckEvery; negative: none).
	Every  time.Duration
	Logger *slog.Logger
}

// DefaultTrailCheckEvery is how often the trail is checked by default.
const DefaultTrailCheckEvery = 6 * time.Hour

// staleCheck is how long a running check blocks others: a member killed
// mid-check leaves its row running.
const staleCheck = time.Hour

func (c TrailChecker) every() time.Duration {
	if c.Every == 0 {
		return DefaultTrailCheckEvery
	}
	return c.Every
}

// Run checks on the schedule until ctx ends.
func (c TrailChecker) Run(ctx context.Context) {
	if c.every() < 0 {
		return
	}
	// A first look soon after start, then at a fraction of Every, so a
	// cluster whose members start together does not check at once.
	wait := time.Duration(rand.Int64N(int64(time.Minute)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = c.every()/4 + time.Duration(rand.Int64N(int64(c.every()/4)+1))
		last, err := c.DB.LastFinishedAuditVerification(ctx)
		if err == nil && time.Since(last.StartedAt) < c.every() {
			continue
		}
		if err != nil && !errors.Is(err, persistence.ErrNotFound) {
			continue // the database is away: the next round
		}
		v, err := c.Start(ctx, "schedule")
		if err != nil {
			continue
		}
		c.Finish(ctx, v)
	}
}

// Start records a check as running (persistence.ErrVerificationRunning
// when one is); Finish then carries it out and records its outcome.
func (c TrailChecker) Start(ctx context.Context, by string) (persistence.AuditVerification, error) {
	return c.DB.StartAuditVerification(ctx, by, c.Member, time.Now(), staleCheck)
}

// Finish checks the trail for the started check v and records the outcome.
func (c TrailChecker) Finish(ctx context.Context, v persistence.AuditVerification) persistence.AuditVerification {
	shards, events, err := VerifyTrail(ctx, c.DB, func(int32, int64) {})
	now := time.Now()
	v.FinishedAt, v.Shards, v.Events, v.Status = &now, shards, events, persistence.VerificationIntact
	var broken *BrokenError
	switch {
	case errors.As(err, &broken):
		v.Status, v.Problem = persistence.VerificationBroken, err.Error()
		c.logger().Error("the audit trail does not verify", "shard", broken.Shard, "error", err)
	case err != nil:
		v.Status, v.Problem = persistence.VerificationFailed, err.Error()
	}
	// The outcome is recorded even when ctx has ended (a stopping member).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.DB.FinishAuditVerification(rctx, v); err != nil {
		c.logger().Error("recording a check of the audit trail", "error", err)
	}
	return v
}

func (c TrailChecker) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}
