package persistence

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
)

// A write's audit events are written in the write's own transaction, into
// audit_pending: a committed change then has its audit row whatever becomes
// of the audit grain, and never answers 503 for want of it. The shard's
// audit grain chains them later (AppendAuditDraining).

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
	rows = append([]pendingAuditRow(nil), rows...)
	now := time.Now().UTC()
	for _, e := range events {
		rows = append(rows, pendingAuditRow{id: uuid.New(), shard: e.Shard, at: now, event: e.Event})
	}
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
		for _, r := range rows {
			if err := insertPendingAudit(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	}
}

func insertPendingAudit(ctx context.Context, tx pgx.Tx, r pendingAuditRow) error {
	payload, err := proto.Marshal(r.event)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_pending (id, shard, created_at, event) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO NOTHING`, r.id, r.shard, r.at, payload)
	return err
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
// It returns the rows made from pending events.
func (db *DB) AppendAuditDraining(ctx context.Context, f Fence, shard int32, rows []AuditRow, limit int, chain func(events [][]byte) ([]AuditRow, error)) ([]AuditRow, error) {
	var drained []AuditRow
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		q, err := tx.Query(ctx, `SELECT id, event FROM audit_pending WHERE shard = $1
			ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`, shard, limit)
		if err != nil {
			return err
		}
		var (
			ids    []uuid.UUID
			events [][]byte
		)
		for q.Next() {
			var (
				id uuid.UUID
				ev []byte
			)
			if err := q.Scan(&id, &ev); err != nil {
				q.Close()
				return err
			}
			ids, events = append(ids, id), append(events, ev)
		}
		q.Close()
		if err := q.Err(); err != nil {
			return err
		}
		if drained, err = chain(events); err != nil {
			return err
		}
		all := append(rows[:len(rows):len(rows)], drained...)
		if len(all) > 0 {
			if err := execAppendAudit(ctx, tx, f, all); err != nil {
				return err
			}
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_pending WHERE id = ANY($1)`, ids); err != nil {
				return err
			}
		}
		return nil
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
