package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
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
// state is loaded separately (an audit chain) use it before loading.
func (db *DB) Claim(ctx context.Context, kind, id, owner string) (Fence, error) {
	var f Fence
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		f, err = claim(ctx, tx, kind, id, owner)
		return err
	})
	return f, classify(err)
}

// checkFenceSQL proves the epoch and holds a share lock on the owner row
// until the transaction ends: a new activation's claim (an UPDATE of the
// row) waits for the write to commit, and a write that waited for a claim
// sees the new epoch and finds no row. It takes a lock rather than bumping
// a counter: a hot calendar updated its owner row with every group commit,
// and PostgreSQL walked the growing chain of dead versions on each lookup
// (fence statements over 5 ms, throughput falling through a run).
const checkFenceSQL = `SELECT 1 FROM grain_owner WHERE kind = $1 AND id = $2 AND epoch = $3 FOR SHARE`

// checkFence is the first statement of every fenced write: it proves the
// activation still owns the grain until the write commits.
func checkFence(ctx context.Context, tx pgx.Tx, f Fence) error {
	tag, err := tx.Exec(ctx, checkFenceSQL, f.Kind, f.ID, f.Epoch)
	if err != nil {
		return fmt.Errorf("fence %s/%s: %w", f.Kind, f.ID, err)
	}
	if tag.RowsAffected() == 0 {
		countFenceConflict(f.Kind)
		return ErrFenced
	}
	return nil
}

// fenceConflicts counts fenced writes refused, by grain kind, in this
// process: each is a second activation of a grain caught writing.
var fenceConflicts sync.Map // kind -> *atomic.Int64

func countFenceConflict(kind string) {
	n, _ := fenceConflicts.LoadOrStore(kind, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}

// FenceConflicts returns the fenced writes refused so far, by grain kind.
func FenceConflicts() map[string]int64 {
	out := map[string]int64{}
	fenceConflicts.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// loadClaimed is how a new activation loads an aggregate that lives in one
// row of table: when the row exists it claims (kind, id) and then runs load,
// in one transaction; when it does not, it claims nothing and returns
// found = false, so reads of unknown ids leave no trace.
func (db *DB) loadClaimed(ctx context.Context, kind, table, id, owner string, load func(pgx.Tx) error) (f Fence, found bool, err error) {
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		f, found = Fence{}, false
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1)`, id).Scan(&found); err != nil || !found {
			return err
		}
		var err error
		if f, err = claim(ctx, tx, kind, id, owner); err != nil {
			return err
		}
		return load(tx)
	})
	if err != nil {
		return Fence{}, false, classify(fmt.Errorf("load %s %s: %w", kind, id, err))
	}
	return f, found, nil
}

// createClaimed claims (kind, id) for a new aggregate and runs insert in the
// same transaction, followed by the event's outbox row.
func (db *DB) createClaimed(ctx context.Context, kind, id, owner string, version int64, event proto.Message, insert func(pgx.Tx) error) (Fence, error) {
	payload, err := proto.Marshal(event)
	if err != nil {
		return Fence{}, err
	}
	var f Fence
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if f, err = claim(ctx, tx, kind, id, owner); err != nil {
			return err
		}
		if err := insert(tx); err != nil {
			return err
		}
		return insertOutbox(ctx, tx, kind, id, version, event, payload)
	})
	return f, err
}

// writeFenced runs write after proving f still owns its grain, followed by
// the event's outbox row, in one transaction.
func (db *DB) writeFenced(ctx context.Context, f Fence, version int64, event proto.Message, write func(pgx.Tx) error) error {
	payload, err := proto.Marshal(event)
	if err != nil {
		return err
	}
	return classify(db.fenced(ctx, f, func(tx pgx.Tx) error {
		if err := write(tx); err != nil {
			return err
		}
		return insertOutbox(ctx, tx, f.Kind, f.ID, version, event, payload)
	}))
}

// fenced runs write after proving f still owns its grain, in one transaction.
func (db *DB) fenced(ctx context.Context, f Fence, write func(pgx.Tx) error) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, f); err != nil {
			return err
		}
		return write(tx)
	})
}

// ErrStale is returned by a fenced update whose row is not at the version
// the change was decided on. The fence held, so only a bug gets here.
var ErrStale = errors.New("row is not at the expected version")

// versionedTables are the tables whose rows StoredVersion reads.
var versionedTables = map[string]string{
	"patients": `SELECT version FROM patients WHERE id = $1`,
	"doctors":  `SELECT version FROM doctors WHERE id = $1`,
	"clinics":  `SELECT version FROM clinics WHERE id = $1`,
}

// StoredVersion is the version of a row as the database has it now (0:
// no row). An activation asks it when a caller names a version newer than
// its own: only if the database has that version is the activation stale;
// otherwise the caller's version is simply wrong.
func (db *DB) StoredVersion(ctx context.Context, table, id string) (int64, error) {
	q, ok := versionedTables[table]
	if !ok {
		return 0, fmt.Errorf("StoredVersion: no table %q", table)
	}
	var v int64
	err := db.Pool.QueryRow(ctx, q, id).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, classify(err)
}
