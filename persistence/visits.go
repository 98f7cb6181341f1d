package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// PatientKey returns a patient's wrapped data key, or ErrNotFound.
func (db *DB) PatientKey(ctx context.Context, patientID string) ([]byte, error) {
	var wrapped []byte
	err := db.Pool.QueryRow(ctx, `SELECT wrapped FROM patient_keys WHERE patient_id = $1`, patientID).Scan(&wrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return wrapped, classify(err)
}

// AddPatientKey stores a patient's wrapped data key unless one exists, and
// returns the one stored: two activations that race both use the winner's.
func (db *DB) AddPatientKey(ctx context.Context, patientID string, wrapped []byte) ([]byte, error) {
	var stored []byte
	err := db.Pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO patient_keys (patient_id, wrapped) VALUES ($1, $2) ON CONFLICT (patient_id) DO NOTHING RETURNING wrapped)
		SELECT wrapped FROM ins UNION ALL SELECT wrapped FROM patient_keys WHERE patient_id = $1 LIMIT 1`, patientID, wrapped).Scan(&stored)
	return stored, classify(err)
}

// StoredVisit is a visit row with its diagnoses; clinical text is sealed.
type StoredVisit struct {
	ID, PatientID, DoctorID, AppointmentID string
	OccurredAt, CreatedAt                  time.Time
	ReasonSealed, NotesSealed              []byte
	CreatedBy                              string
	Fingerprint                            []byte
	Diagnoses                              []StoredDiagnosis
	// Codes are the diagnoses' codes in the clear, for the analytics'
	// counts (diagnosis_counts), which name no patient; never stored with
	// the visit.
	Codes []string
}

// StoredDiagnosis is a diagnosis row; Onset is YYYY-MM-DD or "". The code
// is sealed (CodeSealed, SealDiagnosisCode); Code is set only on rows
// written before codes were sealed.
type StoredDiagnosis struct {
	ID, Code, Status, Onset string
	TextSealed, CodeSealed  []byte
}

// RecordVisit inserts a visit and its diagnoses, fenced by the patient
// grain's claim. ErrExists when the idempotency key made a visit already.
func (db *DB) RecordVisit(ctx context.Context, f Fence, v StoredVisit, key string) error {
	var k *string
	if key != "" {
		k = &key
	}
	var appt *string
	if v.AppointmentID != "" {
		appt = &v.AppointmentID
	}
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO visits (id, patient_id, doctor_id, appointment_id, occurred_at, reason_sealed, notes_sealed,
				idempotency_key, fingerprint, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			v.ID, v.PatientID, v.DoctorID, appt, v.OccurredAt, v.ReasonSealed, v.NotesSealed, k, v.Fingerprint, v.CreatedAt, v.CreatedBy); err != nil {
			return err
		}
		for i, d := range v.Diagnoses {
			var onset *string
			if d.Onset != "" {
				onset = &d.Onset
			}
			if _, err := tx.Exec(ctx, `INSERT INTO diagnoses (id, patient_id, visit_id, position, code, code_sealed, text_sealed, status, onset)
				VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8)`, d.ID, v.PatientID, v.ID, i, d.CodeSealed, d.TextSealed, d.Status, onset); err != nil {
				return err
			}
		}
		if len(v.Codes) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO diagnosis_counts (day, doctor_id, code, visits)
				SELECT ($1::timestamptz AT TIME ZONE 'UTC')::date, $2, c, 1 FROM (SELECT DISTINCT unnest($3::text[]) AS c) codes
				ON CONFLICT (day, doctor_id, code) DO UPDATE SET visits = diagnosis_counts.visits + 1`,
				v.OccurredAt, v.DoctorID, v.Codes); err != nil {
				return err
			}
		}
		return nil
	})
	if isUniqueViolation(err, "visits_patient_id_idempotency_key_key") {
		return ErrExists
	}
	return classify(err)
}

const visitColumns = `id::text, patient_id::text, doctor_id::text, coalesce(appointment_id::text, ''), occurred_at, reason_sealed,
	notes_sealed, created_at, created_by, coalesce(fingerprint, ''::bytea)`

func scanVisit(r pgx.Row) (StoredVisit, error) {
	var v StoredVisit
	err := r.Scan(&v.ID, &v.PatientID, &v.DoctorID, &v.AppointmentID, &v.OccurredAt, &v.ReasonSealed, &v.NotesSealed, &v.CreatedAt, &v.CreatedBy, &v.Fingerprint)
	return v, err
}

// VisitByKey finds the visit an idempotency key made, or ErrNotFound.
func (db *DB) VisitByKey(ctx context.Context, patientID, key string) (StoredVisit, error) {
	v, err := scanVisit(db.Pool.QueryRow(ctx, `SELECT `+visitColumns+` FROM visits WHERE patient_id = $1 AND idempotency_key = $2`, patientID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredVisit{}, ErrNotFound
	}
	if err != nil {
		return StoredVisit{}, classify(err)
	}
	vs := []StoredVisit{v}
	err = db.attachDiagnoses(ctx, vs)
	return vs[0], err
}

// Visits lists a patient's visits newest first, after the (occurred_at, id)
// cursor when before is not zero, at most limit, with their diagnoses.
func (db *DB) Visits(ctx context.Context, patientID string, before time.Time, beforeID string, limit int) ([]StoredVisit, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+visitColumns+` FROM visits WHERE patient_id = $1
		AND ($2::timestamptz = 'epoch' OR (occurred_at, id) < ($2, $3::uuid)) ORDER BY occurred_at DESC, id DESC LIMIT $4`,
		patientID, before, nullUUID(beforeID), limit)
	if err != nil {
		return nil, classify(err)
	}
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredVisit, error) { return scanVisit(r) })
	if err != nil {
		return nil, classify(err)
	}
	return vs, db.attachDiagnoses(ctx, vs)
}

func nullUUID(id string) string {
	if id == "" {
		return "00000000-0000-0000-0000-000000000000"
	}
	return id
}

func (db *DB) attachDiagnoses(ctx context.Context, vs []StoredVisit) error {
	if len(vs) == 0 {
		return nil
	}
	ids := make([]string, len(vs))
	at := map[string]int{}
	for i, v := range vs {
		ids[i], at[v.ID] = v.ID, i
	}
	rows, err := db.Pool.Query(ctx, `SELECT visit_id::text, id::text, code, code_sealed, text_sealed, status, coalesce(to_char(onset, 'YYYY-MM-DD'), '')
		FROM diagnoses WHERE visit_id = ANY($1::TEXT[]::UUID[]) ORDER BY visit_id, position`, ids)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			visit string
			d     StoredDiagnosis
		)
		if err := rows.Scan(&visit, &d.ID, &d.Code, &d.CodeSealed, &d.TextSealed, &d.Status, &d.Onset); err != nil {
			return classify(err)
		}
		vs[at[visit]].Diagnoses = append(vs[at[visit]].Diagnoses, d)
	}
	return classify(rows.Err())
}
