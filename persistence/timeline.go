package persistence

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// TimelineRow is one entry of a patient's timeline. Text is plain; Sealed,
// when set, is clinical text sealed with the patient's data key, bound to
// SealedAAD (the grain opens it).
type TimelineRow struct {
	Kind, ID, DoctorID, VisitID string
	At                          time.Time
	Text                        string
	Sealed                      []byte
	SealedAAD                   string
}

// Timeline merges a patient's visits, diagnoses, prescriptions,
// vaccinations and appointments (those that took place or are to) newest first, after the
// (at, kind, id) cursor when before is not zero, at most limit. A
// vaccination stands at midnight UTC of its date.
func (db *DB) Timeline(ctx context.Context, patientID string, before time.Time, beforeKind, beforeID string, limit int) ([]TimelineRow, error) {
	rows, err := db.Pool.Query(ctx, `SELECT kind, id, at, doctor, visit, text, sealed, aad FROM (
			SELECT 'visit' AS kind, id::text AS id, occurred_at AS at, doctor_id::text AS doctor, '' AS visit, '' AS text,
				reason_sealed AS sealed, 'visit/' || id || '/reason' AS aad
			FROM visits WHERE patient_id = $1
			UNION ALL
			SELECT 'diagnosis', d.id::text, v.occurred_at, v.doctor_id::text, v.id::text, d.code || ' ', d.text_sealed,
				'visit/' || v.id || '/diagnosis/' || d.id
			FROM diagnoses d JOIN visits v ON v.id = d.visit_id WHERE d.patient_id = $1
			UNION ALL
			SELECT 'vaccination', id::text, given_on::timestamp AT TIME ZONE 'UTC', '', '',
				vaccine_name || ', dose ' || dose_number, NULL, ''
			FROM vaccinations WHERE patient_id = $1
			UNION ALL
			SELECT 'prescription', id::text, created_at, prescriber_id::text, '',
				medication_name || ' ' || strength || ', ' || status, NULL, ''
			FROM prescriptions WHERE patient_id = $1
			UNION ALL
			SELECT 'appointment', id::text, start_at, doctor_id::text, '', 'appointment ' || status, NULL, ''
			FROM appointments WHERE patient_id = $1 AND status IN ('booked', 'checked_in', 'completed', 'no_show')
		) t
		WHERE $2::timestamptz = 'epoch' OR (at, kind, id) < ($2, $3, $4)
		ORDER BY at DESC, kind DESC, id DESC LIMIT $5`, patientID, before, beforeKind, beforeID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TimelineRow, error) {
		var t TimelineRow
		err := r.Scan(&t.Kind, &t.ID, &t.At, &t.DoctorID, &t.VisitID, &t.Text, &t.Sealed, &t.SealedAAD)
		return t, err
	})
	return out, classify(err)
}
