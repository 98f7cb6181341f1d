package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RecordVaccination inserts a vaccination, fenced by the patient grain's
// claim, its vaccine and lot sealed with dk, the patient's data key.
// ErrExists when the idempotency key recorded one already.
func (db *DB) RecordVaccination(ctx context.Context, f Fence, dk *seal.Key, v *messages.Vaccination, key string, fingerprint []byte) error {
	var k *string
	if key != "" {
		k = &key
	}
	sealed, err := sealVaccination(dk, v)
	if err != nil {
		return err
	}
	err = db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO vaccinations (id, patient_id, atc_code, vaccine_name, given_on, dose_number, lot, given_by,
			idempotency_key, fingerprint, created_at, details_sealed) VALUES ($1, $2, '', '', $3, $4, '', $5, $6, $7, $8, $9)`,
			v.Id, v.PatientId, v.Date, v.DoseNumber, v.GivenBy, k, fingerprint, v.CreatedAt.AsTime(), sealed)
		return err
	})
	if isUniqueViolation(err, "vaccinations_patient_id_idempotency_key_key") {
		return ErrExists
	}
	return classify(err)
}

const vaccinationColumns = `id::text, patient_id::text, atc_code, vaccine_name, to_char(given_on, 'YYYY-MM-DD'), dose_number, lot, given_by,
	created_at, coalesce(fingerprint, ''::bytea), details_sealed`

func scanVaccination(dk *seal.Key, r pgx.Row) (*messages.Vaccination, []byte, error) {
	var (
		v          = &messages.Vaccination{}
		created    time.Time
		fp, sealed []byte
	)
	if err := r.Scan(&v.Id, &v.PatientId, &v.AtcCode, &v.VaccineName, &v.Date, &v.DoseNumber, &v.Lot, &v.GivenBy, &created, &fp, &sealed); err != nil {
		return nil, nil, err
	}
	v.CreatedAt = timestamppb.New(created)
	return v, fp, openVaccination(dk, sealed, v)
}

// VaccinationByKey finds, opened with dk, the vaccination an idempotency key recorded, with
// that request's fingerprint, or ErrNotFound.
func (db *DB) VaccinationByKey(ctx context.Context, dk *seal.Key, patientID, key string) (*messages.Vaccination, []byte, error) {
	v, fp, err := scanVaccination(dk, db.Pool.QueryRow(ctx, `SELECT `+vaccinationColumns+` FROM vaccinations WHERE patient_id = $1 AND idempotency_key = $2`, patientID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	return v, fp, classify(err)
}

// Vaccinations lists a patient's vaccinations, opened with dk, newest first, after the
// (date, id) cursor when beforeDate (YYYY-MM-DD) is not empty, at most limit.
func (db *DB) Vaccinations(ctx context.Context, dk *seal.Key, patientID, beforeDate, beforeID string, limit int) ([]*messages.Vaccination, error) {
	var before *string
	if beforeDate != "" {
		before = &beforeDate
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+vaccinationColumns+` FROM vaccinations WHERE patient_id = $1
		AND ($2::date IS NULL OR (given_on, id) < ($2::date, $3::uuid)) ORDER BY given_on DESC, id DESC LIMIT $4`,
		patientID, before, nullUUID(beforeID), limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.Vaccination, error) {
		v, _, err := scanVaccination(dk, r)
		return v, err
	})
	return out, classify(err)
}
