package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AuditQuery selects audit events across the whole trail: every field
// set narrows it; From is inclusive and To exclusive (zero: unbounded).
// Results come newest first, before the cursor Before (nil: the newest).
type AuditQuery struct {
	PatientID, Subject, Action, Outcome string
	From, To                            time.Time
	Before                              *AuditCursor
}

// SearchAudit returns up to limit events that match q, newest first. A
// patient or subject filter walks its own index; otherwise the time index.
func (db *DB) SearchAudit(ctx context.Context, q AuditQuery, limit int) ([]AuditRow, error) {
	to := q.To
	if to.IsZero() {
		to = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	before := AuditCursor{OccurredAt: to, Shard: -1} // (to, -1, _): To is exclusive
	if q.Before != nil && q.Before.OccurredAt.Before(to) {
		before = *q.Before
	}
	rows, err := db.Pool.Query(ctx, auditSelect+` WHERE occurred_at >= $1
		AND (occurred_at, shard, seq) < ($2, $3, $4)
		AND ($5 = '' OR patient_id = $5) AND ($6 = '' OR subject = $6)
		AND ($7 = '' OR action = $7) AND ($8 = '' OR outcome = $8)
		ORDER BY occurred_at DESC, shard DESC, seq DESC LIMIT $9`,
		q.From, before.OccurredAt, before.Shard, before.Seq, q.PatientID, q.Subject, q.Action, q.Outcome, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditRow])
	return out, classify(err)
}

// AuditVerification is one check of the audit trail (audit_verifications).
type AuditVerification struct {
	ID          string     `json:"id"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Status      string     `json:"status"`
	RequestedBy string     `json:"requested_by"`
	Member      string     `json:"member"`
	Shards      int        `json:"shards"`
	Events      int64      `json:"events"`
	Problem     string     `json:"problem,omitempty"`
}

// The outcomes of a check of the audit trail.
const (
	VerificationRunning = "running"
	VerificationIntact  = "intact"
	VerificationBroken  = "broken"
	VerificationFailed  = "failed"
)

// ErrVerificationRunning is returned by StartAuditVerification while
// another check started within the running window has not finished.
var ErrVerificationRunning = errors.New("a check of the audit trail is running")

// StartAuditVerification records a check as running, unless one started
// after staleAfter ago is still running (a member that died mid-check
// leaves its row running; past staleAfter it no longer blocks).
func (db *DB) StartAuditVerification(ctx context.Context, by, member string, at time.Time, staleAfter time.Duration) (AuditVerification, error) {
	v := AuditVerification{ID: uuid.NewString(), StartedAt: at, Status: VerificationRunning, RequestedBy: by, Member: member}
	tag, err := db.Pool.Exec(ctx, `INSERT INTO audit_verifications (id, started_at, status, requested_by, member)
		SELECT $1, $2, 'running', $3, $4
		WHERE NOT EXISTS (SELECT 1 FROM audit_verifications WHERE status = 'running' AND started_at > $5)`,
		v.ID, at, by, member, at.Add(-staleAfter))
	if err != nil {
		return v, classify(err)
	}
	if tag.RowsAffected() == 0 {
		return v, ErrVerificationRunning
	}
	return v, nil
}

// FinishAuditVerification records a check's outcome.
func (db *DB) FinishAuditVerification(ctx context.Context, v AuditVerification) error {
	_, err := db.Pool.Exec(ctx, `UPDATE audit_verifications SET finished_at = $2, status = $3, shards = $4, events = $5, problem = $6
		WHERE id = $1`, v.ID, v.FinishedAt, v.Status, v.Shards, v.Events, v.Problem)
	return classify(err)
}

// AuditVerifications returns the latest checks, newest first.
func (db *DB) AuditVerifications(ctx context.Context, limit int) ([]AuditVerification, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id::text, started_at, finished_at, status, requested_by, member, shards, events, problem
		FROM audit_verifications ORDER BY started_at DESC LIMIT $1`, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditVerification])
	return out, classify(err)
}

// LastFinishedAuditVerification is the latest check that finished
// (ErrNotFound: none yet).
func (db *DB) LastFinishedAuditVerification(ctx context.Context) (AuditVerification, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id::text, started_at, finished_at, status, requested_by, member, shards, events, problem
		FROM audit_verifications WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1`)
	if err != nil {
		return AuditVerification{}, classify(err)
	}
	v, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[AuditVerification])
	if errors.Is(err, pgx.ErrNoRows) {
		return v, ErrNotFound
	}
	return v, classify(err)
}

// AuditPendingBacklog is how many audit events wait to be chained and the
// age of the oldest (0: none).
func (db *DB) AuditPendingBacklog(ctx context.Context, now time.Time) (int64, time.Duration, error) {
	var n int64
	var oldest *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM audit_pending`).Scan(&n, &oldest); err != nil {
		return 0, 0, classify(err)
	}
	if oldest == nil {
		return n, 0, nil
	}
	return n, max(now.Sub(*oldest), 0), nil
}
