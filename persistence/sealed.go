package persistence

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
)

// Everything clinical about a patient is sealed with the patient's data
// key, itself sealed with the master key in patient_keys: shredding that
// one row (ErasePatient) leaves every sealed value unreadable. Each value
// is bound to its row and field by the associated data, so a value copied
// elsewhere does not open.

func patientKeyAAD(patientID string) string { return "patient-key/" + patientID }
func clinicalAAD(patientID string) string   { return "patient/" + patientID + "/clinical" }
func historyAAD(patientID string, v int64) string {
	return fmt.Sprintf("patient/%s/clinical/%d", patientID, v)
}
func diagnosisCodeAAD(diagnosisID string) string { return "diagnosis/" + diagnosisID + "/code" }
func vaccinationAAD(vaccinationID string) string { return "vaccination/" + vaccinationID + "/details" }

// NewDataKey makes a patient's data key and returns it with its form
// wrapped by master, as patient_keys stores it.
func NewDataKey(master *seal.Key, patientID string) (*seal.Key, []byte, error) {
	if master == nil {
		return nil, nil, errors.New("no master key: clinical records are off on this node")
	}
	fresh := make([]byte, seal.KeySize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, nil, err
	}
	k, err := seal.NewKey(fresh)
	if err != nil {
		return nil, nil, err
	}
	return k, master.Seal(fresh, patientKeyAAD(patientID)), nil
}

// clinicalJSON is the sealed form of a patient's clinical values.
type clinicalJSON struct {
	BloodType string        `json:"blood_type"`
	Allergies []allergyJSON `json:"allergies"`
}

func sealClinical(k *seal.Key, p *messages.PatientRecord, aad string) ([]byte, error) {
	if k == nil {
		return nil, errors.New("no data key for the patient's clinical values")
	}
	raw, err := allergiesJSON(p)
	if err != nil {
		return nil, err
	}
	var as []allergyJSON
	if err := json.Unmarshal(raw, &as); err != nil {
		return nil, err
	}
	b, err := json.Marshal(clinicalJSON{BloodType: p.BloodType.Name(), Allergies: as})
	if err != nil {
		return nil, err
	}
	return k.Seal(b, aad), nil
}

func openClinical(k *seal.Key, sealed []byte, aad string, into *messages.PatientRecord) error {
	if k == nil {
		return errors.New("no data key for the patient's clinical values")
	}
	b, err := k.Open(sealed, aad)
	if err != nil {
		return err
	}
	var c clinicalJSON
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	into.BloodType, _ = messages.ParseBloodType(c.BloodType)
	raw, _ := json.Marshal(c.Allergies)
	into.Allergies, err = parseAllergies(raw)
	return err
}

// OpenClinical fills sp's blood type and allergies from their sealed form
// with k, the patient's data key; a row from before sealing has them plain.
func OpenClinical(k *seal.Key, sp *StoredPatient) error {
	if sp == nil || sp.ClinicalSealed == nil {
		return nil
	}
	return openClinical(k, sp.ClinicalSealed, clinicalAAD(sp.Record.Id), sp.Record)
}

func sameAllergies(a, b []*messages.Allergy) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// SealDiagnosisCode and OpenDiagnosisCode seal a diagnosis code with the
// patient's data key.
func SealDiagnosisCode(k *seal.Key, diagnosisID, code string) []byte {
	return k.Seal([]byte(code), diagnosisCodeAAD(diagnosisID))
}

// OpenDiagnosisCode opens what SealDiagnosisCode made; a row from before
// sealing (sealed nil) has its code plain.
func OpenDiagnosisCode(k *seal.Key, d StoredDiagnosis) (string, error) {
	if d.CodeSealed == nil {
		return d.Code, nil
	}
	b, err := k.Open(d.CodeSealed, diagnosisCodeAAD(d.ID))
	return string(b), err
}

// vaccinationDetails is the sealed part of a vaccination.
type vaccinationDetails struct {
	ATCCode     string `json:"atc_code"`
	VaccineName string `json:"vaccine_name"`
	Lot         string `json:"lot,omitempty"`
}

func sealVaccination(k *seal.Key, v *messages.Vaccination) ([]byte, error) {
	if k == nil {
		return nil, errors.New("no data key for the vaccination")
	}
	b, err := json.Marshal(vaccinationDetails{ATCCode: v.AtcCode, VaccineName: v.VaccineName, Lot: v.Lot})
	if err != nil {
		return nil, err
	}
	return k.Seal(b, vaccinationAAD(v.Id)), nil
}

func openVaccination(k *seal.Key, sealed []byte, v *messages.Vaccination) error {
	if sealed == nil {
		return nil // from before sealing: the plain columns hold it
	}
	if k == nil {
		return errors.New("no data key for the vaccination")
	}
	b, err := k.Open(sealed, vaccinationAAD(v.Id))
	if err != nil {
		return err
	}
	var d vaccinationDetails
	if err := json.Unmarshal(b, &d); err != nil {
		return err
	}
	v.AtcCode, v.VaccineName, v.Lot = d.ATCCode, d.VaccineName, d.Lot
	return nil
}

// SealPlain seals the clinical values that rows written before migration
// 0022 hold plain, a patient at a time, and returns how many patients it
// changed. Each update is conditional on the value still being plain, so
// it is safe beside the grains' own writes and on several members at once.
func (db *DB) SealPlain(ctx context.Context, master *seal.Key) (int, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT id::TEXT FROM patients WHERE clinical_sealed IS NULL
		UNION SELECT patient_id::TEXT FROM patient_clinical_history WHERE sealed IS NULL
		UNION SELECT patient_id::TEXT FROM diagnoses WHERE code_sealed IS NULL
		UNION SELECT patient_id::TEXT FROM vaccinations WHERE details_sealed IS NULL`)
	if err != nil {
		return 0, classify(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, classify(err)
	}
	for _, id := range ids {
		if err := db.sealPatientPlain(ctx, master, id); err != nil {
			return 0, fmt.Errorf("seal patient %s: %w", id, err)
		}
	}
	return len(ids), nil
}

func (db *DB) sealPatientPlain(ctx context.Context, master *seal.Key, id string) error {
	k, err := db.DataKey(ctx, master, id)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		if sp, err := scanPatient(tx.QueryRow(ctx, `SELECT `+patientColumns+` FROM patients WHERE id = $1`, id)); err == nil && sp.ClinicalSealed == nil {
			sealed, err := sealClinical(k, sp.Record, clinicalAAD(id))
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE patients SET clinical_sealed = $2, blood_type = '', allergies = '[]'
				WHERE id = $1 AND clinical_sealed IS NULL`, id, sealed); err != nil {
				return err
			}
		} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version, blood_type, allergies FROM patient_clinical_history
			WHERE patient_id = $1 AND sealed IS NULL`, id)
		if err != nil {
			return err
		}
		type plain struct {
			v         int64
			blood     string
			allergies []byte
		}
		var hs []plain
		for rows.Next() {
			var h plain
			if err := rows.Scan(&h.v, &h.blood, &h.allergies); err != nil {
				rows.Close()
				return err
			}
			hs = append(hs, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, h := range hs {
			p := &messages.PatientRecord{Id: id}
			p.BloodType, _ = messages.ParseBloodType(h.blood)
			if p.Allergies, err = parseAllergies(h.allergies); err != nil {
				return err
			}
			sealed, err := sealClinical(k, p, historyAAD(id, h.v))
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE patient_clinical_history SET sealed = $3, blood_type = '', allergies = '[]'
				WHERE patient_id = $1 AND version = $2 AND sealed IS NULL`, id, h.v, sealed); err != nil {
				return err
			}
		}
		drows, err := tx.Query(ctx, `SELECT id::TEXT, code FROM diagnoses WHERE patient_id = $1 AND code_sealed IS NULL`, id)
		if err != nil {
			return err
		}
		codes, err := pgx.CollectRows(drows, pgx.RowToStructByPos[struct{ ID, Code string }])
		if err != nil {
			return err
		}
		for _, d := range codes {
			if _, err := tx.Exec(ctx, `UPDATE diagnoses SET code_sealed = $2, code = '' WHERE id = $1 AND code_sealed IS NULL`,
				d.ID, SealDiagnosisCode(k, d.ID, d.Code)); err != nil {
				return err
			}
		}
		vrows, err := tx.Query(ctx, `SELECT id::TEXT, atc_code, vaccine_name, lot FROM vaccinations WHERE patient_id = $1 AND details_sealed IS NULL`, id)
		if err != nil {
			return err
		}
		vs, err := pgx.CollectRows(vrows, pgx.RowToStructByPos[struct{ ID, ATC, Name, Lot string }])
		if err != nil {
			return err
		}
		for _, v := range vs {
			sealed, err := sealVaccination(k, &messages.Vaccination{Id: v.ID, AtcCode: v.ATC, VaccineName: v.Name, Lot: v.Lot})
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE vaccinations SET details_sealed = $2, atc_code = '', vaccine_name = '', lot = ''
				WHERE id = $1 AND details_sealed IS NULL`, v.ID, sealed); err != nil {
				return err
			}
		}
		return nil
	})
}
