package patient

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of a visit record.
const (
	MaxReasonChars    = 500
	MaxNotesChars     = 20000
	MaxDiagnoses      = 20
	MaxDiagnosisChars = 500
	// visitClockSkew is how far in the future a visit may be dated (clocks differ).
	visitClockSkew = 5 * time.Minute
)

// icd10Pattern is the shape of an ICD-10 code: a letter (not U, reserved
// for special purposes), two characters of which the first is a digit,
// and optionally a dot and up to four more (WHO and national extensions).
var icd10Pattern = regexp.MustCompile(`^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$`)

// ValidICD10 reports whether code has the shape of an ICD-10 code.
func ValidICD10(code string) bool { return icd10Pattern.MatchString(code) }

// NewVisit checks a visit a doctor records and completes it: ids, the
// doctor (the caller), the patient, the creation time. Codes are upper-cased,
// a diagnosis without status is active.
func NewVisit(in *messages.Visit, patientID, doctorID string, now time.Time) (*messages.Visit, error) {
	var v validate.Errors
	v.Text("reason", in.GetReason(), MaxReasonChars, true)
	v.LongText("notes", in.GetNotes(), MaxNotesChars, false)
	occurred := in.GetOccurredAt().AsTime()
	switch {
	case in.GetOccurredAt() == nil:
		v.Add("occurred_at", "is required")
	case in.GetOccurredAt().CheckValid() != nil:
		v.Add("occurred_at", "must be an RFC 3339 instant such as 2026-11-23T08:00:00Z")
	case occurred.After(now.Add(visitClockSkew)):
		v.Add("occurred_at", "must not be in the future")
	case occurred.Year() < 1900:
		v.Add("occurred_at", "must be after 1900")
	}
	if a := in.GetAppointmentId(); a != "" && !validate.ID(a) {
		v.Add("appointment_id", "must be an appointment id (UUID)")
	}
	if len(in.GetDiagnoses()) > MaxDiagnoses {
		v.Add("diagnoses", fmt.Sprintf("at most %d per visit", MaxDiagnoses))
	}
	out := &messages.Visit{Id: uuid.NewString(), PatientId: patientID, DoctorId: doctorID, AppointmentId: strings.ToLower(in.GetAppointmentId()),
		OccurredAt: timestamppb.New(occurred.UTC()), Reason: in.GetReason(), Notes: in.GetNotes(), CreatedAt: timestamppb.New(now.UTC())}
	for i, d := range in.GetDiagnoses() {
		field := fmt.Sprintf("diagnoses[%d]", i)
		code := strings.ToUpper(strings.TrimSpace(d.GetCode()))
		if !ValidICD10(code) {
			v.Add(field+".code", "must be an ICD-10 code such as J45 or J45.0")
		}
		v.Text(field+".text", d.GetText(), MaxDiagnosisChars, true)
		status := d.GetStatus()
		if status == messages.DiagnosisStatus_DIAGNOSIS_STATUS_UNSPECIFIED {
			status = messages.DiagnosisStatus_DIAGNOSIS_STATUS_ACTIVE
		} else if status.Name() == "" {
			v.Add(field+".status", "must be active or resolved")
		}
		if on := d.GetOnset(); on != "" {
			if t, err := time.Parse(time.DateOnly, on); err != nil {
				v.Add(field+".onset", "must be a date YYYY-MM-DD")
			} else if t.After(occurred) {
				v.Add(field+".onset", "must not be after the visit")
			}
		}
		out.Diagnoses = append(out.Diagnoses, &messages.Diagnosis{Id: uuid.NewString(), Code: code, Text: d.GetText(), Status: status, Onset: d.GetOnset()})
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// VisitFingerprint identifies what a visit request asked for.
func VisitFingerprint(in *messages.Visit) []byte { return clinicalFingerprint(in) }

// Limits of a vaccination record.
const (
	MaxVaccineNameChars = 200
	MaxLotChars         = 64
	MaxDoseNumber       = 20
)

// atcVaccinePattern is an ATC code in group J07 (vaccines), at level 3, 4 or 5.
var atcVaccinePattern = regexp.MustCompile(`^J07[A-Z]([A-Z]([0-9]{2})?)?$`)

// NewVaccination checks a dose a doctor records and completes it; the
// code is upper-cased.
func NewVaccination(in *messages.Vaccination, patientID, givenBy string, now time.Time) (*messages.Vaccination, error) {
	var v validate.Errors
	code := strings.ToUpper(strings.TrimSpace(in.GetAtcCode()))
	if !atcVaccinePattern.MatchString(code) {
		v.Add("atc_code", "must be an ATC code in group J07 (vaccines), such as J07BX03")
	}
	v.Text("vaccine_name", in.GetVaccineName(), MaxVaccineNameChars, true)
	v.Text("lot", in.GetLot(), MaxLotChars, false)
	if d, err := time.Parse(time.DateOnly, in.GetDate()); err != nil {
		v.Add("date", "must be a date YYYY-MM-DD")
	} else if d.After(now) || d.Year() < 1900 {
		v.Add("date", "must not be in the future, nor before 1900")
	}
	if n := in.GetDoseNumber(); n < 1 || n > MaxDoseNumber {
		v.Add("dose_number", fmt.Sprintf("must be 1 to %d", MaxDoseNumber))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return &messages.Vaccination{Id: uuid.NewString(), PatientId: patientID, AtcCode: code, VaccineName: in.GetVaccineName(),
		Date: in.GetDate(), DoseNumber: in.GetDoseNumber(), Lot: in.GetLot(), GivenBy: givenBy, CreatedAt: timestamppb.New(now.UTC())}, nil
}

// clinicalFingerprint identifies what a clinical write asked for, so an
// idempotency key replayed with another request is told apart.
func clinicalFingerprint(m proto.Message) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	h := sha256.Sum256(b)
	return h[:]
}

// A visit at an appointment is dated from VisitEarly before the
// appointment's start (the earliest check-in) to VisitLate after its end.
const (
	VisitEarly = time.Hour
	VisitLate  = 12 * time.Hour
)

// VisitFitsAppointment checks the appointment a visit names (nil: none
// found): it must be this patient's with this doctor, must have taken or
// be taking place (booked, checked in or completed), and the visit must
// fall within it.
func VisitFitsAppointment(v *messages.Visit, a *messages.AppointmentRecord) error {
	var errs validate.Errors
	switch {
	case a == nil || a.GetPatientId() != v.GetPatientId() || a.GetDoctorId() != v.GetDoctorId():
		errs.Add("appointment_id", "must name one of this patient's appointments with you")
	case a.GetStatus() != messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED &&
		a.GetStatus() != messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN &&
		a.GetStatus() != messages.AppointmentStatus_APPOINTMENT_STATUS_COMPLETED:
		errs.Add("appointment_id", "must name an appointment that took place (not cancelled or missed)")
	default:
		at := v.GetOccurredAt().AsTime()
		if at.Before(a.GetStart().AsTime().Add(-VisitEarly)) || at.After(a.GetEnd().AsTime().Add(VisitLate)) {
			errs.Add("occurred_at", "must fall within the appointment (from an hour before its start to 12 hours after its end)")
		}
	}
	return errs.Err()
}
