package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Export states (patient_exports.state).
const (
	ExportQueued     = "queued"
	ExportBuilding   = "building"
	ExportReady      = "ready"
	ExportFailed     = "failed"
	ExportDownloaded = "downloaded"
	ExportExpired    = "expired"
)

var (
	// ErrExportUsed is a download of an export downloaded already or expired.
	ErrExportUsed = errors.New("the export was downloaded already or has expired")
	// ErrExportNotReady is a download of an export still being made.
	ErrExportNotReady = errors.New("the export is not ready")
)

// Export is one patient export (patient_exports).
type Export struct {
	ID, PatientID, RequestedBy, Language, State string
	RequestedAt, ExpiresAt, DownloadedAt        time.Time
	Progress                                    int
	BlobKey                                     string
	KeySealed                                   []byte
	Size                                        int64
	TokenHash                                   []byte
	Error                                       string
}

const exportColumns = `id::TEXT, patient_id::TEXT, requested_by, language, state, requested_at, expires_at, downloaded_at,
	progress, coalesce(blob_key, ''), key_sealed, size, token_hash, error`

func scanExport(r pgx.CollectableRow) (Export, error) {
	var (
		e          Export
		downloaded pgtype.Timestamptz
	)
	err := r.Scan(&e.ID, &e.PatientID, &e.RequestedBy, &e.Language, &e.State, &e.RequestedAt, &e.ExpiresAt, &downloaded,
		&e.Progress, &e.BlobKey, &e.KeySealed, &e.Size, &e.TokenHash, &e.Error)
	e.DownloadedAt = downloaded.Time
	return e, err
}

func (db *DB) oneExport(ctx context.Context, q string, args ...any) (Export, error) {
	rows, err := db.Pool.Query(ctx, q, args...)
	if err != nil {
		return Export{}, classify(err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanExport)
	if errors.Is(err, pgx.ErrNoRows) {
		return Export{}, ErrNotFound
	}
	return e, classify(err)
}

// QueueExport files an export through the patient grain's fence;
// ErrExists while another is being made for the patient.
func (db *DB) QueueExport(ctx context.Context, f Fence, e Export) error {
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO patient_exports (id, patient_id, requested_by, requested_at, language, token_hash, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.ID, e.PatientID, e.RequestedBy, e.RequestedAt, e.Language, e.TokenHash, e.ExpiresAt)
		return err
	})
	if isUniqueViolation(err, "patient_exports_making") {
		return ErrExists
	}
	return classify(err)
}

// GetExport is one export, or ErrNotFound.
func (db *DB) GetExport(ctx context.Context, id string) (Export, error) {
	return db.oneExport(ctx, `SELECT `+exportColumns+` FROM patient_exports WHERE id = $1`, id)
}

// ClaimExport takes the oldest queued export, or one whose builder's
// lease ran out, for owner until the lease ends; ErrNotFound when none.
func (db *DB) ClaimExport(ctx context.Context, owner string, now time.Time, lease time.Duration) (Export, error) {
	return db.oneExport(ctx, `UPDATE patient_exports SET state = 'building', claimed_by = $1, claimed_until = $2, progress = 0
		WHERE id = (SELECT id FROM patient_exports WHERE state = 'queued' OR (state = 'building' AND claimed_until < $3)
			ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+exportColumns, owner, now.Add(lease), now)
}

// ExportProgress records how far owner's build of an export is and extends
// its lease; ErrNotFound when owner no longer holds it.
func (db *DB) ExportProgress(ctx context.Context, id, owner string, percent int, until time.Time) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE patient_exports SET progress = $3, claimed_until = $4
		WHERE id = $1 AND claimed_by = $2 AND state = 'building'`, id, owner, percent, until)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return classify(err)
}

// FinishExport marks owner's build ready with its sealed blob; ErrNotFound
// when owner no longer holds it (the blob is then the caller's to delete).
func (db *DB) FinishExport(ctx context.Context, id, owner, blobKey string, keySealed []byte, size int64) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE patient_exports SET state = 'ready', progress = 100, blob_key = $3, key_sealed = $4, size = $5
		WHERE id = $1 AND claimed_by = $2 AND state = 'building'`, id, owner, blobKey, keySealed, size)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return classify(err)
}

// FailExport marks owner's build failed, saying why (no personal data).
func (db *DB) FailExport(ctx context.Context, id, owner, why string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE patient_exports SET state = 'failed', error = $3
		WHERE id = $1 AND claimed_by = $2 AND state = 'building'`, id, owner, why)
	return classify(err)
}

// TakeExportDownload spends an export's single-use link: the export must
// be ready, unexpired and the token's hash must match. ErrNotFound for no
// such export or a wrong token (the two look the same to the caller),
// ErrExportNotReady while it is made, ErrExportUsed once spent or expired.
func (db *DB) TakeExportDownload(ctx context.Context, id string, tokenHash []byte, now time.Time) (Export, error) {
	e, err := db.oneExport(ctx, `UPDATE patient_exports SET state = 'downloaded', downloaded_at = $3
		WHERE id = $1 AND token_hash = $2 AND state = 'ready' AND expires_at > $3 RETURNING `+exportColumns, id, tokenHash, now)
	if !errors.Is(err, ErrNotFound) {
		return e, err
	}
	cur, gerr := db.oneExport(ctx, `SELECT `+exportColumns+` FROM patient_exports WHERE id = $1 AND token_hash = $2`, id, tokenHash)
	switch {
	case gerr != nil:
		return Export{}, gerr
	case cur.State == ExportQueued || cur.State == ExportBuilding || cur.State == ExportFailed:
		return cur, ErrExportNotReady
	default:
		return cur, ErrExportUsed
	}
}

// ExportsToClear lists exports whose blob should go: downloaded, failed,
// or past their expiry.
func (db *DB) ExportsToClear(ctx context.Context, now time.Time, limit int) ([]Export, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+exportColumns+` FROM patient_exports
		WHERE blob_key IS NOT NULL AND (state IN ('downloaded', 'failed') OR expires_at <= $1) LIMIT $2`, now, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanExport)
	return out, classify(err)
}

// ExportCleared records that an export's blob is deleted; an export never
// downloaded is then expired.
func (db *DB) ExportCleared(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE patient_exports SET blob_key = NULL, key_sealed = NULL,
		state = CASE WHEN state IN ('ready', 'queued', 'building') THEN 'expired' ELSE state END WHERE id = $1`, id)
	return classify(err)
}

// PatientRecordRow reads a patient's row without claiming the grain: the
// export's read, which never writes.
func (db *DB) PatientRecordRow(ctx context.Context, id string) (*StoredPatient, error) {
	sp, err := scanPatient(db.Pool.QueryRow(ctx, `SELECT `+patientColumns+` FROM patients WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return sp, classify(err)
}

// PatientAuditRows lists every audit row about a patient, oldest first,
// with its place in the chain (the export's access log).
func (db *DB) PatientAuditRows(ctx context.Context, patientID string) ([]AuditRow, error) {
	rows, err := db.Pool.Query(ctx, auditSelect+` WHERE patient_id = $1 ORDER BY occurred_at, shard, seq`, patientID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditRow])
	return out, classify(err)
}

// AllPatientAppointments lists every appointment of a patient, in any
// state, in start order (the export's).
func (db *DB) AllPatientAppointments(ctx context.Context, patient string) ([]*messages.AppointmentRecord, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments WHERE patient_id = $1 ORDER BY start_at, id`, patient)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.AppointmentRecord, error) { return scanAppointment(r) })
	return out, classify(err)
}

// PatientEmergencyAccesses lists every emergency access to a patient's
// record, oldest first.
func (db *DB) PatientEmergencyAccesses(ctx context.Context, patientID string) ([]EmergencyAccess, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+emergencyColumns+` FROM emergency_access WHERE patient_id = $1 ORDER BY granted_at, id`, patientID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanEmergency)
	return out, classify(err)
}

// PatientErasures lists a patient's erasure requests, oldest first.
func (db *DB) PatientErasures(ctx context.Context, patientID string) ([]Erasure, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+erasureColumns+` FROM erasure_requests WHERE patient_id = $1 ORDER BY requested_at, id`, patientID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanErasure)
	return out, classify(err)
}

// CheckpointsAfter returns the checkpoint that signs a shard's chain at or
// after seq (the first such), or, while none does yet, the shard's latest:
// what an exported log's entries of that shard can be checked against.
func (db *DB) CheckpointsAfter(ctx context.Context, shard int32, seq int64) ([]Checkpoint, error) {
	rows, err := db.Pool.Query(ctx, `(SELECT shard, seq, hash, signed_at, key_id, signature FROM audit_checkpoints
			WHERE shard = $1 AND seq >= $2 ORDER BY seq LIMIT 1)
		UNION ALL (SELECT shard, seq, hash, signed_at, key_id, signature FROM audit_checkpoints
			WHERE shard = $1 AND seq < $2 AND NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE shard = $1 AND seq >= $2)
			ORDER BY seq DESC LIMIT 1)`, shard, seq)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Checkpoint])
	return out, classify(err)
}
