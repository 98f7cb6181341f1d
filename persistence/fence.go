package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrFenced is returned by a fenced write when another activation of the
// same grain has claimed the identity since this one did. The stale
// activation must drop its state and stop; the caller retries.
var ErrFenced = errors.New("fenced: another activation owns this grain")

// Fence is an activation's claim on its grain identity.
//
// Invariant (enforced by checkFence inside every write transaction): a write
// commits only if grain_owner still holds this Epoch for (Kind, ID). A new
// activation claims before it loads state, so the state it loads includes
// every write that can still commit, and no older activation's write can
// commit after the claim.
type Fence struct {
	Kind  string
	ID    string
	Epoch int64
}

// claim takes ownership of (kind, id) for a new activation by bumping its
// epoch, inside tx. owner names the member, for operators.
func claim(ctx context.Context, tx pgx.Tx, kind, id, owner string) (Fence, error) {
	var epoch int64
	err := tx.QueryRow(ctx, `INSERT INTO grain_owner (kind, id, epoch, owner, claimed_at)
		VALUES ($1, $2, 1, $3, $4)
		ON CONFLICT (kind, id) DO UPDATE
		SET epoch = grain_owner.epoch + 1, owner = excluded.owner, claimed_at = excluded.claimed_at
		RETURNING epoch`, kind, id, owner, time.Now().UTC()).Scan(&epoch)
	if err != nil {
		return Fence{}, fmt.Errorf("claim %s/%s: %w", kind, id, err)
	}
	return Fence{Kind: kind, ID: id, Epoch: epoch}, nil
}

// Claim takes ownership of (kind, id) in its own transaction. Grains whose
// state is loaded separately (the audit shard) use it before loading.
func (db *DB) Claim(ctx context.Context, kind, id, owner string) (Fence, error) {
	var f Fence
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		f, err = claim(ctx, tx, kind, id, owner)
		return err
	})
	return f, classify(err)
}

// checkFence is the first statement of every fenced write: it proves the
// activation still owns the grain and counts the write.
func checkFence(ctx context.Context, tx pgx.Tx, f Fence) error {
	tag, err := tx.Exec(ctx, `UPDATE grain_owner SET version = version + 1
		WHERE kind = $1 AND id = $2 AND epoch = $3`, f.Kind, f.ID, f.Epoch)
	if err != nil {
		return fmt.Errorf("fence %s/%s: %w", f.Kind, f.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrFenced
	}
	return nil
}
