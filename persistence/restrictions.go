package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Restriction kinds.
const (
	BlockDoctor = "block-doctor"
	BlockClinic = "block-clinic"
	// DemographicsOnly limits a doctor to what the desk sees of the record.
	DemographicsOnly = "demographics-only"
)

// ErrNoTarget is returned when a restriction names no such doctor or clinic.
var ErrNoTarget = errors.New("no such doctor or clinic")

// Restriction is one of a patient's choices about who may read their
// record; LiftedAt is zero while it holds.
type Restriction struct {
	ID, Kind, TargetID  string
	CreatedAt, LiftedAt time.Time
	CreatedBy, LiftedBy string
}

// notBlocked is the condition that no live restriction of patient (a SQL
// expression) blocks doctor (another), by name or by clinic.
func notBlocked(patient, doctor string) string {
	return `NOT EXISTS (SELECT 1 FROM patient_restrictions r WHERE r.patient_id = ` + patient + ` AND r.lifted_at IS NULL
		AND ((r.kind = 'block-doctor' AND r.target_id = ` + doctor + `)
			OR (r.kind = 'block-clinic' AND r.target_id = (SELECT clinic_id FROM doctors WHERE id = ` + doctor + `))))`
}

// limitedTo is the condition that a live restriction of patient limits
// doctor to demographics.
func limitedTo(patient, doctor string) string {
	return `EXISTS (SELECT 1 FROM patient_restrictions r WHERE r.patient_id = ` + patient + ` AND r.lifted_at IS NULL
		AND r.kind = 'demographics-only' AND r.target_id = ` + doctor + `)`
}

// Restrictions lists a patient's restrictions, live and lifted, oldest first.
func (db *DB) Restrictions(ctx context.Context, patientID string) ([]Restriction, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id::TEXT, kind, target_id::TEXT, created_at, created_by, lifted_at, lifted_by
		FROM patient_restrictions WHERE patient_id = $1 ORDER BY created_at, id`, patientID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Restriction, error) {
		var (
			x      Restriction
			lifted pgtype.Timestamptz
		)
		err := r.Scan(&x.ID, &x.Kind, &x.TargetID, &x.CreatedAt, &x.CreatedBy, &lifted, &x.LiftedBy)
		x.LiftedAt = lifted.Time
		return x, err
	})
	return out, classify(err)
}

// Restrict records a restriction through the patient grain's fence. A live
// one of the same kind on the same target is kept (created is false).
func (db *DB) Restrict(ctx context.Context, f Fence, patientID string, r Restriction) (created bool, err error) {
	target := map[string]string{BlockDoctor: `SELECT 1 FROM doctors WHERE id = $1`, DemographicsOnly: `SELECT 1 FROM doctors WHERE id = $1`,
		BlockClinic: `SELECT 1 FROM clinics WHERE id = $1`}[r.Kind]
	if target == "" {
		return false, ErrNoTarget
	}
	err = db.fenced(ctx, f, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, target, r.TargetID).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
			return ErrNoTarget
		} else if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO patient_restrictions (id, patient_id, kind, target_id, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (patient_id, kind, target_id) WHERE lifted_at IS NULL DO NOTHING`,
			r.ID, patientID, r.Kind, r.TargetID, r.CreatedAt, r.CreatedBy)
		created = err == nil && tag.RowsAffected() == 1
		return err
	})
	if errors.Is(err, ErrNoTarget) {
		return false, err
	}
	return created, classify(err)
}

// Lift ends a live restriction through the patient grain's fence;
// ErrNotFound when the patient has no such live restriction.
func (db *DB) Lift(ctx context.Context, f Fence, patientID, id, by string, at time.Time) error {
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE patient_restrictions SET lifted_at = $3, lifted_by = $4
			WHERE id = $1 AND patient_id = $2 AND lifted_at IS NULL`, id, patientID, at, by)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	return classify(err)
}
