package prescription

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/interactions"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
)

var now = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

const patientID = "11111111-1111-4111-8111-111111111111"

func fluoxetine() *messages.PrescriptionRecord {
	return &messages.PrescriptionRecord{Medication: &messages.Medication{AtcCode: " n06ab03", Name: "Fluoxetine", Strength: "20 mg", Form: "capsule"},
		Dose: "1 capsule", Route: "oral", Frequency: "once daily", DurationDays: 30, Refills: 1, Notes: "review in 4 weeks"}
}

func fields(err error) string {
	var v validate.Errors
	if !errors.As(err, &v) {
		return "not a validation error: " + err.Error()
	}
	var out []string
	for _, f := range v {
		out = append(out, f.Field)
	}
	return strings.Join(out, ",")
}

func TestNewValidatesAndCompletes(t *testing.T) {
	p, err := New(fluoxetine(), "p-1", patientID, "doctor-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Medication.AtcCode != "N06AB03" || p.Status != messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE || p.PrescriberId != "doctor-1" ||
		!p.ExpiresAt.AsTime().Equal(now.Add(30*24*time.Hour)) || p.Version != 1 {
		t.Fatalf("prescription = %v", p)
	}
	bad := &messages.PrescriptionRecord{Medication: &messages.Medication{AtcCode: "N06A", Name: "x"}, DurationDays: 400, Refills: -1,
		Dose: "1", Route: "oral", Frequency: "daily\x00"}
	_, err = New(bad, "p-2", "not-a-uuid", "doctor-1", now)
	if got := fields(err); got != "medication.atc_code,medication.strength,medication.form,frequency,duration_days,refills,patient_id" {
		t.Fatalf("fields = %s", got)
	}
}

func TestDispensesCountRefillsAndComplete(t *testing.T) {
	p, _ := New(fluoxetine(), "p-1", patientID, "doctor-1", now)
	if _, _, err := Dispense(p, "pharmacy", "", now); fields(err) != "quantity" {
		t.Fatalf("dispense without quantity: %v", err)
	}
	p1, d1, err := Dispense(p, "pharmacy", "30 capsules", now.Add(time.Hour))
	if err != nil || d1.Number != 1 || p1.Status != messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE || p1.Version != 2 || len(p.Dispenses) != 0 {
		t.Fatalf("first dispense: %v %v %v", p1, d1, err)
	}
	p2, d2, err := Dispense(p1, "pharmacy", "30 capsules", now.Add(29*24*time.Hour))
	if err != nil || d2.Number != 2 || p2.Status != messages.PrescriptionStatus_PRESCRIPTION_STATUS_COMPLETED || p2.EndedAt == nil {
		t.Fatalf("the refill (the last dispense allowed): %v %v", p2, err)
	}
	if _, _, err := Dispense(p2, "pharmacy", "30 capsules", now); !IsStateError(err) {
		t.Fatalf("a dispense after completion: %v", err)
	}
	if _, err := Cancel(p2, "doctor-1", "stopped", now); !IsStateError(err) {
		t.Fatalf("cancel after completion: %v", err)
	}
}

func TestCancelAndExpire(t *testing.T) {
	p, _ := New(fluoxetine(), "p-1", patientID, "doctor-1", now)
	if _, err := Cancel(p, "doctor-1", "", now); fields(err) != "reason" {
		t.Fatalf("cancel without reason: %v", err)
	}
	c, err := Cancel(p, "doctor-2", "rash", now.Add(time.Hour))
	if err != nil || c.Status != messages.PrescriptionStatus_PRESCRIPTION_STATUS_CANCELLED || c.EndedBy != "doctor-2" || c.EndReason != "rash" {
		t.Fatalf("cancel: %v %v", c, err)
	}
	if _, ok := Expire(c, now.Add(365*24*time.Hour)); ok {
		t.Fatal("a cancelled prescription expired")
	}
	end := p.ExpiresAt.AsTime()
	if _, ok := Expire(p, end.Add(-time.Microsecond)); ok || Due(p, end.Add(-time.Microsecond)) {
		t.Fatal("expired before the end of its duration")
	}
	e, ok := Expire(p, end.Add(time.Hour))
	if !ok || e.Status != messages.PrescriptionStatus_PRESCRIPTION_STATUS_EXPIRED || !e.EndedAt.AsTime().Equal(end) {
		t.Fatalf("expire = %v", e)
	}
	if _, _, err := Dispense(e, "pharmacy", "1", end.Add(time.Hour)); !IsStateError(err) {
		t.Fatalf("dispense of an expired prescription: %v", err)
	}
}

func TestCheckNamesTheInteractingPrescription(t *testing.T) {
	active := []Active{
		{ID: "rx-para", Medication: &messages.Medication{AtcCode: "N02BE01", Name: "Paracetamol"}},
		{ID: "rx-mao", Medication: &messages.Medication{AtcCode: "N06AF03", Name: "Phenelzine"}},
	}
	allergies := []*messages.Allergy{{Substance: "sertraline", AtcCode: "N06AB06", Severity: messages.AllergySeverity_ALLERGY_SEVERITY_MILD}}
	ws, blocked := Check(interactions.HighPriority(), &messages.Medication{AtcCode: "N06AB03", Name: "Fluoxetine"}, active, allergies)
	if !blocked || len(ws) != 2 {
		t.Fatalf("warnings = %v", ws)
	}
	if ws[0].Kind != "interaction" || ws[0].OtherPrescriptionId != "rx-mao" || ws[0].Other.Name != "Phenelzine" || !ws[0].Blocking {
		t.Errorf("interaction = %v", ws[0])
	}
	if ws[1].Kind != "allergy" || ws[1].Severity != "major" || ws[1].Other.Name != "sertraline" {
		t.Errorf("allergy = %v", ws[1])
	}
	if ws, blocked := Check(interactions.HighPriority(), &messages.Medication{AtcCode: "C09AA05", Name: "Ramipril"}, active, allergies); blocked || len(ws) != 0 {
		t.Errorf("an unrelated drug warns: %v", ws)
	}
}
