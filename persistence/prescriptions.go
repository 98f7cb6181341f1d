package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PrescriptionKind is the prescription grain's kind in grain_owner.
const PrescriptionKind = "Prescription"

// DataKey returns a patient's data key, creating it on first use. The key
// is stored wrapped by master; two callers that race to create it both get
// the one the database kept.
func (db *DB) DataKey(ctx context.Context, master *seal.Key, patientID string) (*seal.Key, error) {
	if master == nil {
		return nil, errors.New("no master key: clinical records are off on this node")
	}
	wrapped, err := db.PatientKey(ctx, patientID)
	if errors.Is(err, ErrNotFound) {
		var fresh []byte
		if _, fresh, err = NewDataKey(master, patientID); err != nil {
			return nil, err
		}
		wrapped, err = db.AddPatientKey(ctx, patientID, fresh)
	}
	if err != nil {
		return nil, err
	}
	raw, err := master.Open(wrapped, patientKeyAAD(patientID))
	if err != nil {
		return nil, err
	}
	return seal.NewKey(raw)
}

// StoredPrescription is a prescription row. Record carries no clinical
// text: notes, override reason and end reason are the sealed fields.
type StoredPrescription struct {
	Record                                       *messages.PrescriptionRecord
	NotesSealed, OverrideSealed, EndReasonSealed []byte
	Fingerprint                                  []byte
	// DispenseKeys maps each dispense's idempotency key to its number.
	DispenseKeys map[string]int32
}

// ActiveDrug is one of a patient's active prescriptions, as the
// interaction check sees it.
type ActiveDrug struct {
	PrescriptionID string
	Medication     *messages.Medication
}

// AdmitPrescription inserts a prescription fenced by the patient grain's
// claim f. In the same transaction it reads the patient's active
// prescriptions (those not ended at now) and hands them to check, which
// returns the row to insert, or nil to refuse: then nothing is written and
// admitted is false. The fence's share lock serializes admissions per
// patient: a second admission sees the first. ErrExists when the id is
// taken. check may run more than once (a retried transaction).
func (db *DB) AdmitPrescription(ctx context.Context, f Fence, now time.Time, check func(active []ActiveDrug) (*StoredPrescription, error)) (admitted bool, err error) {
	err = db.fenced(ctx, f, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, atc_code, medication_name, strength, form FROM prescriptions
			WHERE patient_id = $1 AND status = 'active' AND expires_at > $2 ORDER BY created_at, id`, f.ID, now)
		if err != nil {
			return err
		}
		active, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ActiveDrug, error) {
			d := ActiveDrug{Medication: &messages.Medication{}}
			err := r.Scan(&d.PrescriptionID, &d.Medication.AtcCode, &d.Medication.Name, &d.Medication.Strength, &d.Medication.Form)
			return d, err
		})
		if err != nil {
			return err
		}
		sp, err := check(active)
		if err != nil {
			return err
		}
		if sp == nil {
			return errRefused
		}
		p := sp.Record
		warnings, err := protojson.Marshal(&messages.PrescriptionWarnings{Warnings: p.Warnings})
		if err != nil {
			return err
		}
		m := p.GetMedication()
		_, err = tx.Exec(ctx, `INSERT INTO prescriptions (id, patient_id, prescriber_id, atc_code, medication_name, strength, form,
				dose, route, frequency, duration_days, refills, notes_sealed, status, warnings, override_sealed, created_at, expires_at,
				version, fingerprint)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`,
			p.Id, p.PatientId, p.PrescriberId, m.AtcCode, m.Name, m.Strength, m.Form, p.Dose, p.Route, p.Frequency,
			p.DurationDays, p.Refills, sp.NotesSealed, p.Status.Name(), warnings, sp.OverrideSealed,
			p.CreatedAt.AsTime(), p.ExpiresAt.AsTime(), p.Version, sp.Fingerprint)
		return err
	})
	switch {
	case errors.Is(err, errRefused):
		return false, nil
	case isUniqueViolation(err, "prescriptions_pkey"):
		return false, ErrExists
	}
	return err == nil, classify(err)
}

// errRefused rolls back an admission its check refused.
var errRefused = errors.New("prescription refused by its check")

const prescriptionColumns = `id::text, patient_id::text, prescriber_id::text, atc_code, medication_name, strength, form, dose, route,
	frequency, duration_days, refills, notes_sealed, status, warnings, override_sealed, created_at, expires_at, ended_at, ended_by,
	end_reason_sealed, version, coalesce(fingerprint, ''::bytea)`

func scanPrescription(r pgx.Row) (StoredPrescription, error) {
	var (
		sp              StoredPrescription
		p               = &messages.PrescriptionRecord{Medication: &messages.Medication{}}
		m               = p.Medication
		status          string
		warnings        []byte
		created, expire time.Time
		ended           *time.Time
	)
	err := r.Scan(&p.Id, &p.PatientId, &p.PrescriberId, &m.AtcCode, &m.Name, &m.Strength, &m.Form, &p.Dose, &p.Route, &p.Frequency,
		&p.DurationDays, &p.Refills, &sp.NotesSealed, &status, &warnings, &sp.OverrideSealed, &created, &expire, &ended, &p.EndedBy,
		&sp.EndReasonSealed, &p.Version, &sp.Fingerprint)
	if err != nil {
		return sp, err
	}
	var ws messages.PrescriptionWarnings
	if err := protojson.Unmarshal(warnings, &ws); err != nil {
		return sp, err
	}
	p.Warnings = ws.Warnings
	p.Status, _ = messages.ParsePrescriptionStatus(status)
	p.CreatedAt, p.ExpiresAt = timestamppb.New(created), timestamppb.New(expire)
	if ended != nil {
		p.EndedAt = timestamppb.New(*ended)
	}
	sp.Record = p
	return sp, nil
}

// LoadPrescription reads a prescription with its dispenses for a new
// activation (see loadClaimed); nil when there is none.
func (db *DB) LoadPrescription(ctx context.Context, id, owner string) (*StoredPrescription, Fence, error) {
	var sp StoredPrescription
	f, found, err := db.loadClaimed(ctx, PrescriptionKind, "prescriptions", id, owner, func(tx pgx.Tx) error {
		var err error
		if sp, err = scanPrescription(tx.QueryRow(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions WHERE id = $1`, id)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT number, dispensed_at, dispensed_by, quantity, coalesce(idempotency_key, '')
			FROM prescription_dispenses WHERE prescription_id = $1 ORDER BY number`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		sp.DispenseKeys = map[string]int32{}
		for rows.Next() {
			var (
				d   = &messages.Dispense{}
				at  time.Time
				key string
			)
			if err := rows.Scan(&d.Number, &at, &d.DispensedBy, &d.Quantity, &key); err != nil {
				return err
			}
			d.DispensedAt = timestamppb.New(at)
			sp.Record.Dispenses = append(sp.Record.Dispenses, d)
			if key != "" {
				sp.DispenseKeys[key] = d.Number
			}
		}
		return rows.Err()
	})
	if err != nil || !found {
		return nil, Fence{}, err
	}
	return &sp, f, nil
}

// UpdatePrescription writes a prescription's new state, decided on version
// prev, fenced by its grain's claim; dispense, when not nil, is the new
// dispense (made with key, "" for none) to insert with it.
func (db *DB) UpdatePrescription(ctx context.Context, f Fence, sp StoredPrescription, prev int64, dispense *messages.Dispense, key string) error {
	p := sp.Record
	var ended *time.Time
	if p.EndedAt != nil {
		t := p.EndedAt.AsTime()
		ended = &t
	}
	return db.fenced(ctx, f, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE prescriptions SET status = $2, ended_at = $3, ended_by = $4, end_reason_sealed = $5, version = $6
			WHERE id = $1 AND version = $7`, p.Id, p.Status.Name(), ended, p.EndedBy, sp.EndReasonSealed, p.Version, prev)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrStale
		}
		if dispense == nil {
			return nil
		}
		var k *string
		if key != "" {
			k = &key
		}
		_, err = tx.Exec(ctx, `INSERT INTO prescription_dispenses (prescription_id, number, dispensed_at, dispensed_by, quantity, idempotency_key)
			VALUES ($1, $2, $3, $4, $5, $6)`, p.Id, dispense.Number, dispense.DispensedAt.AsTime(), dispense.DispensedBy, dispense.Quantity, k)
		return err
	})
}

// Prescriptions lists a patient's prescriptions newest first, in status
// ("" for all), after the (created_at, id) cursor when before is not zero,
// at most limit, with their dispenses.
func (db *DB) Prescriptions(ctx context.Context, patientID, status string, before time.Time, beforeID string, limit int) ([]StoredPrescription, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions WHERE patient_id = $1 AND ($2 = '' OR status = $2)
		AND ($3::timestamptz = 'epoch' OR (created_at, id) < ($3, $4::uuid)) ORDER BY created_at DESC, id DESC LIMIT $5`,
		patientID, status, before, nullUUID(beforeID), limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredPrescription, error) { return scanPrescription(r) })
	if err != nil || len(out) == 0 {
		return out, classify(err)
	}
	ids := make([]string, len(out))
	at := map[string]*messages.PrescriptionRecord{}
	for i, sp := range out {
		ids[i], at[sp.Record.Id] = sp.Record.Id, sp.Record
	}
	drows, err := db.Pool.Query(ctx, `SELECT prescription_id::text, number, dispensed_at, dispensed_by, quantity
		FROM prescription_dispenses WHERE prescription_id = ANY($1::TEXT[]::UUID[]) ORDER BY prescription_id, number`, ids)
	if err != nil {
		return nil, classify(err)
	}
	defer drows.Close()
	for drows.Next() {
		var (
			id string
			t  time.Time
			d  = &messages.Dispense{}
		)
		if err := drows.Scan(&id, &d.Number, &t, &d.DispensedBy, &d.Quantity); err != nil {
			return nil, classify(err)
		}
		d.DispensedAt = timestamppb.New(t)
		at[id].Dispenses = append(at[id].Dispenses, d)
	}
	return out, classify(drows.Err())
}

// DuePrescriptions lists active prescriptions whose duration ended by now,
// oldest first, at most limit: the expiry sweep's work.
func (db *DB) DuePrescriptions(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id::text FROM prescriptions WHERE status = 'active' AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, now, limit)
	if err != nil {
		return nil, classify(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, classify(err)
}

// PrescriptionGone reports whether a prescription's row no longer exists
// (its patient was erased).
func (db *DB) PrescriptionGone(ctx context.Context, id string) (bool, error) {
	var exists bool
	err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM prescriptions WHERE id = $1)`, id).Scan(&exists)
	return err == nil && !exists, classify(err)
}
