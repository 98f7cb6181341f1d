package persistence

import (
	"bytes"
	"context"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
)

// A write's audit events are written in the write's own transaction, into
// audit_pending: a committed change then has its audit row whatever becomes
// of the audit chain, and never answers 503 for want of it. The member's
// audit chain chains them later (AppendAuditDraining).

// PendingAudit is one audit event of a write, for its shard.
type PendingAudit struct {
	Shard int32
	Event proto.Message // a messages.AuditEvent
}

type pendingAuditKey struct{}

type pendingAuditRow struct {
	id    uuid.UUID
	shard int32
	at    time.Time
	event proto.Message
}

// WithAudit returns ctx carrying events to write in the transaction of the
// write ctx is handed to. Hand it to that write only: every transaction
// run with it writes the events. They are encoded when the transaction
// writes them, so the write's own work may still fill them in (a detail).
func WithAudit(ctx context.Context, events ...PendingAudit) context.Context {
	rows, _ := ctx.Value(pendingAuditKey{}).([]pendingAuditRow)
	rows = append(rows[:len(rows):len(rows)], newPendingRows(events)...)
	return context.WithValue(ctx, pendingAuditKey{}, rows)
}

// withPendingAudit wraps a transaction's work so that it also writes the
// audit events ctx carries.
func withPendingAudit(ctx context.Context, fn func(pgx.Tx) error) func(pgx.Tx) error {
	rows, _ := ctx.Value(pendingAuditKey{}).([]pendingAuditRow)
	if len(rows) == 0 {
		return fn
	}
	return func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return insertPendingAudit(ctx, tx, rows...)
	}
}

// insertPendingAudit writes rows in one statement: a calendar batch's
// bookings add one round trip, not one each.
func insertPendingAudit(ctx context.Context, tx pgx.Tx, rows ...pendingAuditRow) error {
	args, err := pendingAuditArgs(rows)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, insertPendingAuditSQL, args...)
	return err
}

const insertPendingAuditSQL = `INSERT INTO audit_pending (id, shard, created_at, event)
	SELECT * FROM unnest($1::UUID[], $2::INT[], $3::TIMESTAMPTZ[], $4::BYTEA[]) ON CONFLICT (id) DO NOTHING`

// pendingAuditArgs are insertPendingAuditSQL's arguments for rows.
func pendingAuditArgs(rows []pendingAuditRow) ([]any, error) {
	n := len(rows)
	ids, shards, ats, payloads := make([]uuid.UUID, n), make([]int32, n), make([]time.Time, n), make([][]byte, n)
	for i, r := range rows {
		payload, err := proto.Marshal(r.event)
		if err != nil {
			return nil, err
		}
		ids[i], shards[i], ats[i], payloads[i] = r.id, r.shard, r.at, payload
	}
	return []any{ids, shards, ats, payloads}, nil
}

// newPendingRows gives events the ids and time they are written under
// (fixed before the transaction, so that a retry writes the same rows).
func newPendingRows(events []PendingAudit) []pendingAuditRow {
	now := time.Now().UTC()
	rows := make([]pendingAuditRow, len(events))
	for i, e := range events {
		rows[i] = pendingAuditRow{id: uuid.New(), shard: e.Shard, at: now, event: e.Event}
	}
	return rows
}

// writeAudited runs a write whose audit event depends on what it wrote:
// write returns the event (nil: none), which goes in the same transaction.
func (db *DB) writeAudited(ctx context.Context, write func(pgx.Tx) (*PendingAudit, error)) error {
	id := uuid.New()
	return db.inTx(ctx, func(tx pgx.Tx) error {
		e, err := write(tx)
		if err != nil || e == nil || e.Event == nil {
			return err
		}
		return insertPendingAudit(ctx, tx, pendingAuditRow{id: id, shard: e.Shard, at: time.Now().UTC(), event: e.Event})
	})
}

// AppendAuditDraining is AppendAudit followed, in the same transaction, by
// up to limit of the shard's pending events, oldest first, which chain
// turns into the rows that continue the chain after rows (it may be called
// again if the transaction retries, so it must depend on its input only).
// The pending events it chains are deleted there: each is chained once.
// Events written for another chain before adoptBefore are taken too (a
// chain adopts what a dead member's chain, or a command without one,
// left; zero: none). It returns the rows made from pending events.
func (db *DB) AppendAuditDraining(ctx context.Context, f Fence, shard int32, rows []AuditRow, limit int, adoptBefore time.Time, chain func(events [][]byte) ([]AuditRow, error)) ([]AuditRow, error) {
	var drained []AuditRow
	// Two statements: the pending events are taken (deleted, locked against
	// other drains), then the rows inserted through the fence check of
	// AppendAudit's statement; a refused insert rolls the taking back.
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// Only this chain's events: its index, (shard, created_at, id), and
		// no scan of the whole table on the hot path.
		take, args := `DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending WHERE shard = $1
			ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING created_at, id, event`, []any{shard, limit}
		if !adoptBefore.IsZero() {
			take, args = `DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending WHERE shard = $1 OR created_at < $3
			ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING created_at, id, event`, append(args, adoptBefore)
		}
		q, err := tx.Query(ctx, take, args...)
		if err != nil {
			return err
		}
		type taken struct {
			at    time.Time
			id    uuid.UUID
			event []byte
		}
		var ts []taken
		for q.Next() {
			var t taken
			if err := q.Scan(&t.at, &t.id, &t.event); err != nil {
				q.Close()
				return err
			}
			ts = append(ts, t)
		}
		q.Close()
		if err := q.Err(); err != nil {
			return err
		}
		// RETURNING keeps no order: chain them as they were written.
		sort.Slice(ts, func(i, j int) bool {
			if !ts[i].at.Equal(ts[j].at) {
				return ts[i].at.Before(ts[j].at)
			}
			return bytes.Compare(ts[i].id[:], ts[j].id[:]) < 0
		})
		events := make([][]byte, len(ts))
		for i, t := range ts {
			events[i] = t.event
		}
		if drained, err = chain(events); err != nil {
			return err
		}
		all := append(rows[:len(rows):len(rows)], drained...)
		if len(all) == 0 {
			return nil
		}
		return execAppendAudit(ctx, tx, f, all)
	})
	if err != nil {
		return nil, classify(err)
	}
	return drained, nil
}

// PendingAuditShards lists the shards with pending events written before
// olderThan: the drain loop's work.
func (db *DB) PendingAuditShards(ctx context.Context, olderThan time.Time) ([]int32, error) {
	rows, err := db.Pool.Query(ctx, `SELECT DISTINCT shard FROM audit_pending WHERE created_at < $1 ORDER BY shard`, olderThan)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	return out, classify(err)
}
