package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// EmergencyAccess is one break-the-glass grant and its review.
type EmergencyAccess struct {
	ID, PatientID, DoctorID, Reason string
	GrantedAt, ExpiresAt            time.Time
	// Review is pending, approved or flagged.
	Review, ReviewedBy, ReviewNote string
	ReviewedAt                     time.Time
}

// Review outcomes.
const (
	ReviewPending  = "pending"
	ReviewApproved = "approved"
	ReviewFlagged  = "flagged"
)

// GrantEmergencyAccess records a grant through the patient grain's fence;
// ErrNoDoctor when the doctor has no record.
func (db *DB) GrantEmergencyAccess(ctx context.Context, f Fence, e EmergencyAccess) error {
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO emergency_access (id, patient_id, doctor_id, reason, granted_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, e.ID, e.PatientID, e.DoctorID, e.Reason, e.GrantedAt, e.ExpiresAt)
		return err
	})
	if isForeignKeyViolation(err) {
		return ErrNoDoctor
	}
	return classify(err)
}

const emergencyColumns = `id::TEXT, patient_id::TEXT, doctor_id::TEXT, reason, granted_at, expires_at, review, reviewed_by, review_note, reviewed_at`

func scanEmergency(r pgx.CollectableRow) (EmergencyAccess, error) {
	var (
		e  EmergencyAccess
		at pgtype.Timestamptz
	)
	err := r.Scan(&e.ID, &e.PatientID, &e.DoctorID, &e.Reason, &e.GrantedAt, &e.ExpiresAt, &e.Review, &e.ReviewedBy, &e.ReviewNote, &at)
	e.ReviewedAt = at.Time
	return e, err
}

// EmergencyReviews lists grants in a review state ("" any), oldest first,
// after the grant afterID was made (keyset: granted_at, id).
func (db *DB) EmergencyReviews(ctx context.Context, review string, after time.Time, afterID string, limit int) ([]EmergencyAccess, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+emergencyColumns+` FROM emergency_access
		WHERE ($1 = '' OR review = $1) AND (granted_at, id) > ($2, $3::UUID)
		ORDER BY granted_at, id LIMIT $4`, review, after, afterID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanEmergency)
	return out, classify(err)
}

// ReviewEmergencyAccess records a privacy officer's decision on a pending
// grant; ErrNotFound when there is no such grant, ErrReviewed when it was
// reviewed already. It returns the grant as reviewed.
func (db *DB) ReviewEmergencyAccess(ctx context.Context, id, decision, by, note string, at time.Time) (EmergencyAccess, error) {
	rows, err := db.Pool.Query(ctx, `UPDATE emergency_access SET review = $2, reviewed_by = $3, review_note = $4, reviewed_at = $5
		WHERE id = $1 AND review = 'pending' RETURNING `+emergencyColumns, id, decision, by, note, at)
	if err != nil {
		return EmergencyAccess{}, classify(err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEmergency)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM emergency_access WHERE id = $1)`, id).Scan(&exists); err != nil {
			return EmergencyAccess{}, classify(err)
		}
		if exists {
			return EmergencyAccess{}, ErrReviewed
		}
		return EmergencyAccess{}, ErrNotFound
	}
	return e, classify(err)
}

// ErrReviewed is returned for a review of a grant that has one already.
var ErrReviewed = errors.New("reviewed already")
