package persistence_test

import (
	"context"
	"testing"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
)

// A row written before clinical values were sealed is sealed by SealPlain,
// once, and reads the same afterwards.
func TestSealPlainSealsRowsWrittenBefore(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	master := testMaster(t)
	p := newPatient()
	if _, _, err := db.RegisterPatient(ctx, "a", master, p, nil, &messages.PatientRegistered{}); err != nil {
		t.Fatal(err)
	}
	// As a row from before migration 0022 was.
	if _, err := db.Pool.Exec(ctx, `UPDATE patients SET clinical_sealed = NULL, blood_type = 'A+',
		allergies = '[{"substance": "latex", "severity": "mild"}]' WHERE id = $1`, p.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE patient_clinical_history SET sealed = NULL, blood_type = 'A+',
		allergies = '[{"substance": "latex", "severity": "mild"}]' WHERE patient_id = $1`, p.Id); err != nil {
		t.Fatal(err)
	}
	n, err := db.SealPlain(ctx, master)
	if err != nil || n != 1 {
		t.Fatalf("SealPlain = %d, %v; want 1 patient", n, err)
	}
	var plain int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM patients WHERE id = $1 AND (blood_type <> '' OR allergies <> '[]' OR clinical_sealed IS NULL)`, p.Id).Scan(&plain); err != nil || plain != 0 {
		t.Fatalf("%d plain patient rows (%v) after SealPlain", plain, err)
	}
	k, err := db.DataKey(ctx, master, p.Id)
	if err != nil {
		t.Fatal(err)
	}
	sp, _, err := db.LoadPatient(ctx, p.Id, "a")
	if err == nil {
		err = persistence.OpenClinical(k, sp)
	}
	if err != nil || sp.Record.BloodType != messages.BloodType_BLOOD_TYPE_A_POS || len(sp.Record.Allergies) != 1 || sp.Record.Allergies[0].Substance != "latex" {
		t.Fatalf("after SealPlain the record reads %v, %v", sp.Record, err)
	}
	hist, err := db.ClinicalHistory(ctx, k, p.Id, 0, 10)
	if err != nil || len(hist) != 1 || hist[0].BloodType != "A+" || hist[0].Allergies[0].Substance != "latex" {
		t.Fatalf("history after SealPlain = %+v, %v", hist, err)
	}
	if n, err := db.SealPlain(ctx, master); err != nil || n != 0 {
		t.Fatalf("SealPlain again = %d, %v; want nothing left", n, err)
	}
}
