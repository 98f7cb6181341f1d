// Package prescription is a prescription's lifecycle and its grain. A
// prescription is created through the patient's grain, which checks it
// against the patient's active prescriptions and allergies one at a time;
// from then on its own grain is the only writer: dispenses and refills,
// cancellation, and expiry at the end of its duration.
//
//	active -> completed (every dispense it allows was made)
//	       -> cancelled (by a doctor who treats the patient, with a reason)
//	       -> expired   (its duration ended; durable: every node's sweep
//	                     finds it in the database, see Sweep)
package prescription

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/interactions"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of a prescription.
const (
	MaxDurationDays = 365
	MaxRefills      = 12
	MaxFieldChars   = 200
	MaxNotesChars   = 4000
	MaxReasonChars  = 1000
)

// atcSubstance is a level-5 ATC code: the substance (N06AB03).
var atcSubstance = regexp.MustCompile(`^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$`)

// ValidATC reports whether code names a substance in the ATC system.
func ValidATC(code string) bool { return atcSubstance.MatchString(code) }

// New checks a prescription a doctor writes and completes it: its id,
// patient, prescriber (the caller), status, creation and expiry. The
// duration runs from creation.
func New(in *messages.PrescriptionRecord, id, patientID, prescriber string, now time.Time) (*messages.PrescriptionRecord, error) {
	var v validate.Errors
	m := in.GetMedication()
	code := strings.ToUpper(strings.TrimSpace(m.GetAtcCode()))
	if !ValidATC(code) {
		v.Add("medication.atc_code", "must be a WHO ATC substance code such as N06AB03")
	}
	v.Text("medication.name", m.GetName(), MaxFieldChars, true)
	v.Text("medication.strength", m.GetStrength(), MaxFieldChars, true)
	v.Text("medication.form", m.GetForm(), MaxFieldChars, true)
	v.Text("dose", in.GetDose(), MaxFieldChars, true)
	v.Text("route", in.GetRoute(), MaxFieldChars, true)
	v.Text("frequency", in.GetFrequency(), MaxFieldChars, true)
	v.LongText("notes", in.GetNotes(), MaxNotesChars, false)
	if d := in.GetDurationDays(); d < 1 || d > MaxDurationDays {
		v.Add("duration_days", fmt.Sprintf("must be 1 to %d", MaxDurationDays))
	}
	if r := in.GetRefills(); r < 0 || r > MaxRefills {
		v.Add("refills", fmt.Sprintf("must be 0 to %d", MaxRefills))
	}
	if !validate.ID(patientID) {
		v.Add("patient_id", "must be a patient id (UUID)")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	created := now.UTC().Truncate(time.Microsecond)
	return &messages.PrescriptionRecord{
		Id: id, PatientId: patientID, PrescriberId: prescriber,
		Medication: &messages.Medication{AtcCode: code, Name: strings.TrimSpace(m.GetName()), Strength: strings.TrimSpace(m.GetStrength()),
			Form: strings.TrimSpace(m.GetForm())},
		Dose: in.GetDose(), Route: in.GetRoute(), Frequency: in.GetFrequency(), DurationDays: in.GetDurationDays(), Refills: in.GetRefills(),
		Notes: in.GetNotes(), Status: messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE,
		CreatedAt: timestamppb.New(created), ExpiresAt: timestamppb.New(created.Add(time.Duration(in.GetDurationDays()) * 24 * time.Hour)),
		Version: 1,
	}, nil
}

// Fingerprint identifies what a create asked for, so an idempotency key
// replayed with another request is told apart.
func Fingerprint(in *messages.PrescriptionRecord, overrideReason string) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&messages.CreatePrescriptionRequest{Prescription: in, OverrideReason: overrideReason})
	h := sha256.Sum256(b)
	return h[:]
}

// Check lists the warnings a new medication meets: interactions with each
// active prescription and the patient's allergies. blocked reports whether
// any of them refuses the prescription unless overridden.
func Check(checker interactions.Checker, med *messages.Medication, active []Active, allergies []*messages.Allergy) (ws []*messages.PrescriptionWarning, blocked bool) {
	drug := interactions.Drug{ATC: med.GetAtcCode(), Name: med.GetName()}
	others := make([]interactions.Drug, len(active))
	for i, a := range active {
		others[i] = interactions.Drug{ATC: a.Medication.GetAtcCode(), Name: a.Medication.GetName()}
	}
	found := checker.Check(drug, others)
	var as []interactions.Allergy
	for _, a := range allergies {
		as = append(as, interactions.Allergy{Substance: a.GetSubstance(), ATC: a.GetAtcCode(), Severity: a.GetSeverity().Name()})
	}
	found = append(found, checker.CheckAllergies(drug, as)...)
	for _, w := range found {
		out := &messages.PrescriptionWarning{Kind: w.Kind, Severity: w.Severity, Effect: w.Effect, Advice: w.Advice, Rule: w.Rule, Source: w.Source,
			Drug: &messages.Medication{AtcCode: w.Drug.ATC, Name: w.Drug.Name}, Other: &messages.Medication{AtcCode: w.Other.ATC, Name: w.Other.Name},
			Blocking: interactions.Blocking[w.Severity]}
		if w.Kind == "interaction" {
			for _, a := range active {
				if a.Medication.GetAtcCode() == w.Other.ATC && a.Medication.GetName() == w.Other.Name {
					out.OtherPrescriptionId, out.Other = a.ID, a.Medication
					break
				}
			}
		}
		blocked = blocked || out.Blocking
		ws = append(ws, out)
	}
	return ws, blocked
}

// Active is one of the patient's active prescriptions.
type Active struct {
	ID         string
	Medication *messages.Medication
}

// Errors of the lifecycle; the grain maps them to WRONG_STATE.
type stateError struct{ msg string }

func (e stateError) Error() string { return e.msg }

// IsStateError reports whether err is a refusal by the lifecycle.
func IsStateError(err error) bool { _, ok := err.(stateError); return ok }

func ended(p *messages.PrescriptionRecord) error {
	return stateError{fmt.Sprintf("the prescription is %s", p.GetStatus().Name())} // text
}

// Due reports whether p's duration has ended at now while it is active.
func Due(p *messages.PrescriptionRecord, now time.Time) bool {
	return p.GetStatus() == messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE && !now.Before(p.GetExpiresAt().AsTime())
}

// Expire ends an active prescription whose duration is over, at its
// expiry time. ok is false when there is nothing to do.
func Expire(p *messages.PrescriptionRecord, now time.Time) (next *messages.PrescriptionRecord, ok bool) {
	if !Due(p, now) {
		return nil, false
	}
	next = proto.Clone(p).(*messages.PrescriptionRecord)
	next.Status, next.EndedAt, next.Version = messages.PrescriptionStatus_PRESCRIPTION_STATUS_EXPIRED, p.ExpiresAt, p.Version+1
	return next, true
}

// Dispense records one fill of an active prescription; the last fill it
// allows (1 + refills) completes it.
func Dispense(p *messages.PrescriptionRecord, by, quantity string, now time.Time) (*messages.PrescriptionRecord, *messages.Dispense, error) {
	var v validate.Errors
	v.Text("quantity", quantity, MaxFieldChars, true)
	if err := v.Err(); err != nil {
		return nil, nil, err
	}
	if p.GetStatus() != messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE {
		return nil, nil, ended(p)
	}
	at := timestamppb.New(now.UTC().Truncate(time.Microsecond))
	d := &messages.Dispense{Number: int32(len(p.Dispenses)) + 1, DispensedAt: at, DispensedBy: by, Quantity: quantity}
	next := proto.Clone(p).(*messages.PrescriptionRecord)
	next.Dispenses, next.Version = append(next.Dispenses, d), p.Version+1
	if d.Number == 1+p.Refills {
		next.Status, next.EndedAt = messages.PrescriptionStatus_PRESCRIPTION_STATUS_COMPLETED, at
	}
	return next, d, nil
}

// Cancel ends an active prescription, with the reason (required).
func Cancel(p *messages.PrescriptionRecord, by, reason string, now time.Time) (*messages.PrescriptionRecord, error) {
	var v validate.Errors
	v.LongText("reason", reason, MaxReasonChars, true)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if p.GetStatus() != messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE {
		return nil, ended(p)
	}
	next := proto.Clone(p).(*messages.PrescriptionRecord)
	next.Status, next.EndedAt, next.EndedBy, next.EndReason, next.Version = messages.PrescriptionStatus_PRESCRIPTION_STATUS_CANCELLED,
		timestamppb.New(now.UTC().Truncate(time.Microsecond)), by, reason, p.Version+1
	return next, nil
}
