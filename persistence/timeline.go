package persistence

import (
	"context"
	"fmt"

	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"

	"github.com/jackc/pgx/v5"
)

// TimelineRow is one entry of a patient's timeline, opened.
type TimelineRow struct {
	Kind, ID, DoctorID, VisitID string
	At                          time.Time
	Text                        string
}

// Timeline merges a patient's visits, diagnoses, prescriptions,
// vaccinations and appointments (those that took place or are to) newest first, after the
// (at, kind, id) cursor when before is not zero, at most limit, its sealed
// text opened with k, the patient's data key. A vaccination stands at
// midnight UTC of its date.
func (db *DB) Timeline(ctx context.Context, k *seal.Key, patientID string, before time.Time, beforeKind, beforeID string, limit int) ([]TimelineRow, error) {
	// sealed is the entry's sealed text, bound to aad; code is a diagnosis
	// code's sealed form, details a vaccination's (NULL on rows from
	// before they were sealed, whose text then holds them).
	rows, err := db.Pool.Query(ctx, `SELECT kind, id, at, doctor, visit, text, sealed, aad, code, details, dose FROM (
			SELECT 'visit' AS kind, id::text AS id, occurred_at AS at, doctor_id::text AS doctor, '' AS visit, '' AS text,
				reason_sealed AS sealed, 'visit/' || id || '/reason' AS aad, NULL::BYTEA AS code, NULL::BYTEA AS details, 0 AS dose
			FROM visits WHERE patient_id = $1
			UNION ALL
			SELECT 'diagnosis', d.id::text, v.occurred_at, v.doctor_id::text, v.id::text, d.code, d.text_sealed,
				'visit/' || v.id || '/diagnosis/' || d.id, d.code_sealed, NULL, 0
			FROM diagnoses d JOIN visits v ON v.id = d.visit_id WHERE d.patient_id = $1
			UNION ALL
			SELECT 'vaccination', id::text, given_on::timestamp AT TIME ZONE 'UTC', '', '',
				vaccine_name, NULL, '', NULL, details_sealed, dose_number
			FROM vaccinations WHERE patient_id = $1
			UNION ALL
			SELECT 'prescription', id::text, created_at, prescriber_id::text, '',
				medication_name || ' ' || strength || ', ' || status, NULL, '', NULL, NULL, 0
			FROM prescriptions WHERE patient_id = $1
			UNION ALL
			SELECT 'appointment', id::text, start_at, doctor_id::text, '', 'appointment ' || status, NULL, '', NULL, NULL, 0
			FROM appointments WHERE patient_id = $1 AND status IN ('booked', 'checked_in', 'completed', 'no_show')
		) t
		WHERE $2::timestamptz = 'epoch' OR (at, kind, id) < ($2, $3, $4)
		ORDER BY at DESC, kind DESC, id DESC LIMIT $5`, patientID, before, beforeKind, beforeID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TimelineRow, error) {
		var (
			t                     TimelineRow
			sealed, code, details []byte
			aad                   string
			dose                  int
		)
		if err := r.Scan(&t.Kind, &t.ID, &t.At, &t.DoctorID, &t.VisitID, &t.Text, &sealed, &aad, &code, &details, &dose); err != nil {
			return t, err
		}
		return t, openTimelineRow(k, &t, sealed, aad, code, details, dose)
	})
	return out, classify(err)
}

// openTimelineRow writes t's text from its sealed parts.
func openTimelineRow(k *seal.Key, t *TimelineRow, sealed []byte, aad string, code, details []byte, dose int) error {
	switch t.Kind {
	case "diagnosis":
		c, err := OpenDiagnosisCode(k, StoredDiagnosis{ID: t.ID, Code: t.Text, CodeSealed: code})
		if err != nil {
			return err
		}
		t.Text = c + " "
	case "vaccination":
		v := &messages.Vaccination{Id: t.ID, VaccineName: t.Text}
		if err := openVaccination(k, details, v); err != nil {
			return err
		}
		t.Text = fmt.Sprintf("%s, dose %d", v.VaccineName, dose)
	}
	if sealed != nil {
		text, err := k.Open(sealed, aad)
		if err != nil {
			return err
		}
		t.Text += string(text)
	}
	return nil
}
