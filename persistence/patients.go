package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PatientKind is the grain kind whose fence guards the patients table.
const PatientKind = "Patient"

var (
	// ErrIDNPTaken is returned by RegisterPatient when another patient holds
	// the IDNP; IDNPTakenError carries that patient's id.
	ErrIDNPTaken = errors.New("idnp already registered")
	// ErrPatientExists is returned by RegisterPatient when a patient with the
	// same id exists: another activation registered it first.
	ErrPatientExists = errors.New("patient already exists")
)

// IDNPTakenError names the patient who already holds an IDNP.
type IDNPTakenError struct{ ExistingID string }

func (e *IDNPTakenError) Error() string { return "idnp already registered to " + e.ExistingID }
func (e *IDNPTakenError) Unwrap() error { return ErrIDNPTaken }

// StoredPatient is a patient row: the record plus the fingerprint of the
// registration that created it. ClinicalSealed holds blood type and
// allergies sealed with the patient's data key (OpenClinical); nil for a
// row written before they were sealed, whose plain columns hold them.
type StoredPatient struct {
	Record         *messages.PatientRecord
	Fingerprint    []byte
	ClinicalSealed []byte
}

type allergyJSON struct {
	Substance string `json:"substance"`
	Reaction  string `json:"reaction,omitempty"`
	Severity  string `json:"severity"`
	ATCCode   string `json:"atc_code,omitempty"`
}

const patientColumns = `id, idnp, given_name, family_name, birth_date, sex, phone, email,
	blood_type, allergies, version, registration_fingerprint, created_at, updated_at, clinical_sealed`

func scanPatient(row pgx.Row) (*StoredPatient, error) {
	var (
		id                      uuid.UUID
		birth, created, updated time.Time
		sex, blood              string
		allergies               []byte
		p                       = &messages.PatientRecord{}
		fingerprint, sealed     []byte
	)
	err := row.Scan(&id, &p.Idnp, &p.GivenName, &p.FamilyName, &birth, &sex, &p.Phone, &p.Email,
		&blood, &allergies, &p.Version, &fingerprint, &created, &updated, &sealed)
	if err != nil {
		return nil, err
	}
	p.Id = id.String()
	p.BirthDate = birth.Format(time.DateOnly)
	p.Sex, _ = messages.ParseSex(sex)
	p.BloodType, _ = messages.ParseBloodType(blood)
	if p.Allergies, err = parseAllergies(allergies); err != nil {
		return nil, fmt.Errorf("patient %s allergies: %w", p.Id, err)
	}
	p.CreatedAt = timestamppb.New(created)
	p.UpdatedAt = timestamppb.New(updated)
	return &StoredPatient{Record: p, Fingerprint: fingerprint, ClinicalSealed: sealed}, nil
}

func parseAllergies(raw []byte) ([]*messages.Allergy, error) {
	var as []allergyJSON
	if err := json.Unmarshal(raw, &as); err != nil {
		return nil, err
	}
	var out []*messages.Allergy
	for _, a := range as {
		sev, _ := messages.ParseAllergySeverity(a.Severity)
		out = append(out, &messages.Allergy{Substance: a.Substance, Reaction: a.Reaction, Severity: sev, AtcCode: a.ATCCode})
	}
	return out, nil
}

func allergiesJSON(p *messages.PatientRecord) ([]byte, error) {
	as := make([]allergyJSON, 0, len(p.Allergies))
	for _, a := range p.Allergies {
		as = append(as, allergyJSON{Substance: a.Substance, Reaction: a.Reaction, Severity: a.Severity.Name(), ATCCode: a.AtcCode})
	}
	return json.Marshal(as)
}

// LoadPatient reads patient id for a new activation, claiming the grain
// when the patient exists (see loadClaimed); a missing patient returns
// (nil, Fence{}, nil).
func (db *DB) LoadPatient(ctx context.Context, id, owner string) (*StoredPatient, Fence, error) {
	var sp *StoredPatient
	f, found, err := db.loadClaimed(ctx, PatientKind, "patients", id, owner, func(tx pgx.Tx) error {
		var err error
		sp, err = scanPatient(tx.QueryRow(ctx, `SELECT `+patientColumns+` FROM patients WHERE id = $1`, id))
		return err
	})
	if err != nil || !found {
		return nil, Fence{}, err
	}
	return sp, f, nil
}

// RegisterPatient inserts a new patient with a new data key (wrapped by
// master), claiming its grain and writing the registration event to the
// outbox in the same transaction; blood type and allergies are sealed with
// that key, which it returns. It returns an *IDNPTakenError when the IDNP
// belongs to another patient and ErrPatientExists when the id is taken.
func (db *DB) RegisterPatient(ctx context.Context, owner string, master *seal.Key, p *messages.PatientRecord, fingerprint []byte, event proto.Message) (Fence, *seal.Key, error) {
	k, wrapped, err := NewDataKey(master, p.Id)
	if err != nil {
		return Fence{}, nil, err
	}
	clinical, err := sealClinical(k, p, clinicalAAD(p.Id))
	if err != nil {
		return Fence{}, nil, err
	}
	if fingerprint == nil {
		fingerprint = []byte{} // no idempotency key: nothing to recognise a replay by
	}
	f, err := db.createClaimed(ctx, PatientKind, p.Id, owner, p.Version, event, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO patients (`+patientColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', '[]', $9, $10, $11, $12, $13)`,
			p.Id, p.Idnp, p.GivenName, p.FamilyName, p.BirthDate, p.Sex.Name(), p.Phone, p.Email,
			p.Version, fingerprint, p.CreatedAt.AsTime(), p.UpdatedAt.AsTime(), clinical); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO patient_keys (patient_id, wrapped) VALUES ($1, $2)`, p.Id, wrapped); err != nil {
			return err
		}
		if p.BloodType == messages.BloodType_BLOOD_TYPE_UNSPECIFIED && len(p.Allergies) == 0 {
			return nil // nothing clinical yet
		}
		return insertClinicalHistory(ctx, tx, k, p, changedBy(event))
	})
	switch {
	case err == nil:
		return f, k, nil
	case isUniqueViolation(err, "patients_idnp_key"):
		existing, lookupErr := db.PatientIDByIDNP(ctx, p.Idnp)
		if lookupErr != nil {
			return Fence{}, nil, lookupErr
		}
		return Fence{}, nil, &IDNPTakenError{ExistingID: existing}
	case isUniqueViolation(err, "patients_pkey"):
		return Fence{}, nil, ErrPatientExists
	default:
		return Fence{}, nil, classify(fmt.Errorf("register patient: %w", err))
	}
}

// UpdatePatient writes next, the new state of a patient decided on prev,
// through the fence, with its domain event; blood type and allergies are
// sealed with k, the patient's data key, and a change of them is kept in
// the clinical history.
func (db *DB) UpdatePatient(ctx context.Context, f Fence, k *seal.Key, prev, next *messages.PatientRecord, event proto.Message) error {
	p := next
	clinical, err := sealClinical(k, p, clinicalAAD(p.Id))
	if err != nil {
		return err
	}
	changed := prev.BloodType != p.BloodType || !sameAllergies(prev.Allergies, p.Allergies)
	return db.writeFenced(ctx, f, p.Version, event, func(tx pgx.Tx) error {
		if changed {
			if err := insertClinicalHistory(ctx, tx, k, p, changedBy(event)); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE patients SET given_name = $2, family_name = $3, birth_date = $4,
			sex = $5, phone = $6, email = $7, blood_type = '', allergies = '[]', clinical_sealed = $8, version = $9, updated_at = $10
			WHERE id = $1 AND version = $11`,
			p.Id, p.GivenName, p.FamilyName, p.BirthDate, p.Sex.Name(), p.Phone, p.Email,
			clinical, p.Version, p.UpdatedAt.AsTime(), prev.Version)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("patient %s: %w %d", p.Id, ErrStale, prev.Version)
		}
		return err
	})
}

// PatientIDByIDNP returns the id of the patient holding idnp, or
// pgx.ErrNoRows.
func (db *DB) PatientIDByIDNP(ctx context.Context, idnp string) (string, error) {
	var id uuid.UUID
	err := db.Pool.QueryRow(ctx, `SELECT id FROM patients WHERE idnp = $1`, idnp).Scan(&id)
	if err != nil {
		return "", classify(err)
	}
	return id.String(), nil
}

// PatientIDs returns up to limit patient ids; the load generator uses it to
// pick existing patients.
func (db *DB) PatientIDs(ctx context.Context, limit int) ([]string, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id FROM patients ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, classify(err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id uuid.UUID
		err := r.Scan(&id)
		return id.String(), err
	})
	return ids, classify(err)
}

// insertClinicalHistory records the patient's clinical values at p.Version,
// sealed with k.
func insertClinicalHistory(ctx context.Context, tx pgx.Tx, k *seal.Key, p *messages.PatientRecord, by string) error {
	sealed, err := sealClinical(k, p, historyAAD(p.Id, p.Version))
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO patient_clinical_history (patient_id, version, changed_at, changed_by, blood_type, allergies, sealed)
		VALUES ($1, $2, $3, $4, '', '[]', $5)`, p.Id, p.Version, p.UpdatedAt.AsTime(), by, sealed)
	return err
}

// changedBy is the subject a domain event names, "" when none.
func changedBy(event proto.Message) string {
	if e, ok := event.(interface{ GetCaller() *messages.Caller }); ok {
		return e.GetCaller().GetSubject()
	}
	return ""
}

// ClinicalChange is one entry of a patient's blood type and allergy history.
type ClinicalChange struct {
	Version   int64
	ChangedAt time.Time
	ChangedBy string
	BloodType string
	Allergies []*messages.Allergy
}

// ClinicalHistory lists a patient's clinical changes, newest first, below
// version before (0: from the newest), at most limit, opened with k.
func (db *DB) ClinicalHistory(ctx context.Context, k *seal.Key, patientID string, before int64, limit int) ([]ClinicalChange, error) {
	rows, err := db.Pool.Query(ctx, `SELECT version, changed_at, changed_by, blood_type, allergies, sealed FROM patient_clinical_history
		WHERE patient_id = $1 AND ($2 = 0 OR version < $2) ORDER BY version DESC LIMIT $3`, patientID, before, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ClinicalChange, error) {
		var (
			c           ClinicalChange
			raw, sealed []byte
		)
		if err := r.Scan(&c.Version, &c.ChangedAt, &c.ChangedBy, &c.BloodType, &raw, &sealed); err != nil {
			return c, err
		}
		if sealed == nil { // written before clinical values were sealed
			var err error
			c.Allergies, err = parseAllergies(raw)
			return c, err
		}
		var p messages.PatientRecord
		if err := openClinical(k, sealed, historyAAD(patientID, c.Version), &p); err != nil {
			return c, err
		}
		c.BloodType, c.Allergies = p.BloodType.Name(), p.Allergies
		return c, nil
	})
	return out, classify(err)
}
