package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoDoctor is returned when a care-team change names no doctor.
var ErrNoDoctor = errors.New("no such doctor")

// CareTeamMember is one row of a patient's care team.
type CareTeamMember struct {
	DoctorID string
	Since    time.Time
	AddedBy  string
}

// CareTeam lists a patient's care team, longest-standing first.
func (db *DB) CareTeam(ctx context.Context, patientID string) ([]CareTeamMember, error) {
	rows, err := db.Pool.Query(ctx, `SELECT doctor_id::text, added_at, added_by FROM care_team WHERE patient_id = $1 ORDER BY added_at, doctor_id`, patientID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CareTeamMember, error) {
		var m CareTeamMember
		err := r.Scan(&m.DoctorID, &m.Since, &m.AddedBy)
		return m, err
	})
	return out, classify(err)
}

// ChangeCareTeam adds a doctor to a patient's care team (a second add is a
// no-op) or removes one, fenced by the patient grain's claim.
func (db *DB) ChangeCareTeam(ctx context.Context, f Fence, patientID, doctorID, by string, remove bool) error {
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		if remove {
			_, err := tx.Exec(ctx, `DELETE FROM care_team WHERE patient_id = $1 AND doctor_id = $2`, patientID, doctorID)
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO care_team (patient_id, doctor_id, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			patientID, doctorID, by)
		return err
	})
	if isForeignKeyViolation(err) {
		return ErrNoDoctor
	}
	return classify(err)
}
