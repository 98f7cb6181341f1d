package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AuditKind is the grain kind whose fence guards a shard's chain.
const AuditKind = "Audit"

// AuditRow is one stored audit event with its place in the shard's chain.
type AuditRow struct {
	Shard            int32
	Seq              int64
	OccurredAt       time.Time
	Subject          string
	Role             string
	Client           string
	PurposeOfUse     string
	BreakGlassReason string
	RequestID        string
	SourceAddress    string
	Action           string
	ResourceType     string
	ResourceID       string
	PatientID        string
	Outcome          string
	Detail           string
	PrevHash         []byte
	Hash             []byte
	// ClientRequestID is the X-Request-Id the client sent (RequestID is the
	// edge's own); last, as the column was added last.
	ClientRequestID string
}

const auditSelect = `SELECT shard, seq, occurred_at, subject, role, client, purpose_of_use,
	break_glass_reason, request_id, source_address, action, resource_type, resource_id,
	patient_id, outcome, detail, prev_hash, hash, client_request_id FROM audit_events`

// AuditHead returns the last sequence number and hash of a shard's chain;
// (0, nil) for an empty shard.
func (db *DB) AuditHead(ctx context.Context, shard int32) (int64, []byte, error) {
	var (
		seq  int64
		hash []byte
	)
	err := db.Pool.QueryRow(ctx, `SELECT seq, hash FROM audit_events WHERE shard = $1 ORDER BY seq DESC LIMIT 1`, shard).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, classify(fmt.Errorf("audit head %d: %w", shard, err))
	}
	return seq, hash, nil
}

// appendAuditSQL checks the fence and inserts the batch in one statement
// (one round trip, an implicit transaction): the rows go in only while
// grain_owner still holds this activation's epoch.
//
// Unlike other fenced writes it does not bump grain_owner.version: a shard
// appends thousands of batches a second, and updating one row that often
// left PostgreSQL walking its dead versions (reads/s fell by a quarter over
// five minutes). The chain needs no row lock: its primary key (shard, seq)
// lets exactly one activation write each position, so a stale activation
// that slips past the check fails on the next seq the live one took, and
// the chain stays linear.
const appendAuditSQL = `INSERT INTO audit_events (shard, seq, occurred_at, subject, role, client, purpose_of_use,
	break_glass_reason, request_id, source_address, action, resource_type, resource_id,
	patient_id, outcome, detail, prev_hash, hash, client_request_id)
SELECT * FROM unnest($4::INT[], $5::BIGINT[], $6::TIMESTAMPTZ[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[],
	$11::TEXT[], $12::TEXT[], $13::TEXT[], $14::TEXT[], $15::TEXT[], $16::TEXT[],
	$17::TEXT[], $18::TEXT[], $19::TEXT[], $20::BYTEA[], $21::BYTEA[], $22::TEXT[])
WHERE EXISTS (SELECT 1 FROM grain_owner WHERE kind = $1 AND id = $2 AND epoch = $3)`

// AppendAudit makes a batch of chained rows durable through the shard's
// fence. The rows must continue the chain the caller read with AuditHead;
// the primary key (shard, seq) refuses a fork even if the fence were wrong.
// It is a single statement rather than an ExecuteTx transaction: the audit
// append is the hottest write, and one statement needs no client-side
// retry loop (CockroachDB retries implicit transactions itself).
func (db *DB) AppendAudit(ctx context.Context, f Fence, rows []AuditRow) error {
	if len(rows) == 0 {
		return nil
	}
	return classify(execAppendAudit(ctx, db.Pool, f, rows))
}

// execAppendAudit is AppendAudit's statement, on a pool or in a transaction.
func execAppendAudit(ctx context.Context, q interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, f Fence, rows []AuditRow) error {
	tag, err := q.Exec(ctx, appendAuditSQL, appendAuditArgs(f, rows)...)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return appendAuditWrote(f, tag, len(rows))
}

// appendAuditWrote checks what appendAuditSQL wrote of n rows: none means
// the fence did not hold.
func appendAuditWrote(f Fence, tag pgconn.CommandTag, n int) error {
	if tag.RowsAffected() == 0 {
		countFenceConflict(f.Kind)
		return ErrFenced
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("append audit: %d of %d rows written", tag.RowsAffected(), n)
	}
	return nil
}

// appendAuditArgs are appendAuditSQL's arguments for rows.
func appendAuditArgs(f Fence, rows []AuditRow) []any {
	n := len(rows)
	var (
		shards                                                 = make([]int32, n)
		seqs                                                   = make([]int64, n)
		times                                                  = make([]time.Time, n)
		subj, role, client, purpose, glass, reqID, src, action = col(n), col(n), col(n), col(n), col(n), col(n), col(n), col(n)
		rtype, rid, pid, outcome, detail, clientReqID          = col(n), col(n), col(n), col(n), col(n), col(n)
		prev, hash                                             = make([][]byte, n), make([][]byte, n)
	)
	for i, r := range rows {
		shards[i], seqs[i], times[i] = r.Shard, r.Seq, r.OccurredAt
		subj[i], role[i], client[i], purpose[i], glass[i] = r.Subject, r.Role, r.Client, r.PurposeOfUse, r.BreakGlassReason
		reqID[i], src[i], action[i], rtype[i], rid[i] = r.RequestID, r.SourceAddress, r.Action, r.ResourceType, r.ResourceID
		pid[i], outcome[i], detail[i], prev[i], hash[i] = r.PatientID, r.Outcome, r.Detail, r.PrevHash, r.Hash
		clientReqID[i] = r.ClientRequestID
	}
	return []any{f.Kind, f.ID, f.Epoch, shards, seqs, times,
		subj, role, client, purpose, glass, reqID, src, action, rtype, rid, pid, outcome, detail, prev, hash, clientReqID}
}

func col(n int) []string { return make([]string, n) }

// AuditCursor is a position in a patient's access log.
type AuditCursor struct {
	OccurredAt time.Time
	Shard      int32
	Seq        int64
}

// AuditWindow bounds a patient's access log: events at or after From and
// before To (zero: unbounded), newest first, before the cursor Before
// (nil: from the newest).
type AuditWindow struct {
	From, To time.Time
	Before   *AuditCursor
}

// PatientAuditEvents returns up to limit events about one patient in the
// window, newest first (what a patient checking who read their record
// wants to see first). The (patient_id, occurred_at, shard, seq) index is
// walked backwards.
func (db *DB) PatientAuditEvents(ctx context.Context, patientID string, w AuditWindow, limit int) ([]AuditRow, error) {
	to := w.To
	if to.IsZero() {
		to = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	before := AuditCursor{OccurredAt: to, Shard: -1}
	if w.Before != nil && w.Before.OccurredAt.Before(to) {
		before = *w.Before
	}
	// (to, -1, _) sorts before every event at instant to: To is exclusive.
	rows, err := db.Pool.Query(ctx, auditSelect+` WHERE patient_id = $1 AND occurred_at >= $2
		AND (occurred_at, shard, seq) < ($3, $4, $5)
		ORDER BY occurred_at DESC, shard DESC, seq DESC LIMIT $6`,
		patientID, w.From, before.OccurredAt, before.Shard, before.Seq, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditRow])
	return out, classify(err)
}

// AuditShards returns the shards that hold events.
func (db *DB) AuditShards(ctx context.Context) ([]int32, error) {
	rows, err := db.Pool.Query(ctx, `SELECT DISTINCT shard FROM audit_events ORDER BY shard`)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	return out, classify(err)
}

// ScanAuditChain calls fn for every row of a shard in chain order, reading
// in pages so a long chain does not sit in memory.
func (db *DB) ScanAuditChain(ctx context.Context, shard int32, fn func(AuditRow) error) error {
	const page = 5000
	var after int64
	for {
		rows, err := db.Pool.Query(ctx, auditSelect+` WHERE shard = $1 AND seq > $2 ORDER BY seq LIMIT $3`, shard, after, page)
		if err != nil {
			return classify(err)
		}
		batch, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditRow])
		if err != nil {
			return classify(err)
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
			after = r.Seq
		}
		if len(batch) < page {
			return nil
		}
	}
}
