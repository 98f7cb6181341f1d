// Package patient is the patient grain: one per patient, owning the record
// (registration, profile, blood type, allergies), deciding access through
// package access and recording every access in the member's audit chain.
package patient

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/interactions"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits on a patient record; the OpenAPI document states the same.
const (
	MaxNameRunes      = 100
	MaxAllergies      = 100
	MaxSubstanceRunes = 200
	MaxReactionRunes  = 500
)

// ValidationError lists every problem found in a request.
type ValidationError = validate.Errors

// FieldError says what is wrong with one field.
type FieldError = validate.FieldError

// Updatable lists the update_mask paths a change may name.
var Updatable = []string{"given_name", "family_name", "birth_date", "sex", "phone", "email", "blood_type", "allergies"}

var earliestBirth = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

// NewRecord validates a registration and returns the record to store: the
// fields trimmed, version 1, created now. id is the grain identity.
func NewRecord(id string, in *messages.PatientRecord, now time.Time) (*messages.PatientRecord, error) {
	if in == nil {
		return nil, ValidationError{{Field: "patient", Message: "is required"}}
	}
	p := proto.Clone(in).(*messages.PatientRecord)
	normalize(p)
	var errs ValidationError
	if !ValidIDNP(p.Idnp) {
		errs.Add("idnp", "must be 13 digits with a valid check digit")
	}
	errs = append(errs, checkFields(p, now)...)
	if len(errs) > 0 {
		return nil, errs
	}
	p.Id = id
	p.Version = 1
	ts := timestamppb.New(now.UTC().Truncate(time.Microsecond))
	p.CreatedAt, p.UpdatedAt = ts, ts
	return p, nil
}

// ApplyUpdate returns cur changed by the fields req's mask names, and those
// fields' names. It checks the expected version and validates the result.
func ApplyUpdate(cur *messages.PatientRecord, req *messages.UpdatePatientRequest, now time.Time) (*messages.PatientRecord, []string, error) {
	if req.ExpectedVersion != 0 && req.ExpectedVersion != cur.Version {
		return nil, nil, errVersion{want: req.ExpectedVersion, have: cur.Version}
	}
	paths := req.GetUpdateMask().GetPaths()
	in := req.GetPatient()
	if in == nil {
		in = &messages.PatientRecord{}
	}
	var errs ValidationError
	if len(paths) == 0 {
		errs.Add("update_mask", "names no field to change")
	}
	next := proto.Clone(cur).(*messages.PatientRecord)
	var changed []string
	for _, path := range paths {
		if slices.Contains(changed, path) {
			continue
		}
		switch path {
		case "given_name":
			next.GivenName = in.GivenName
		case "family_name":
			next.FamilyName = in.FamilyName
		case "birth_date":
			next.BirthDate = in.BirthDate
		case "sex":
			next.Sex = in.Sex
		case "phone":
			next.Phone = in.Phone
		case "email":
			next.Email = in.Email
		case "blood_type":
			next.BloodType = in.BloodType
		case "allergies":
			next.Allergies = in.Allergies
		case "idnp":
			errs.Add("idnp", "cannot be changed")
			continue
		default:
			errs.Add(path, "is not a field of a patient")
			continue
		}
		changed = append(changed, path)
	}
	normalize(next)
	errs = append(errs, checkFields(next, now)...)
	if len(errs) > 0 {
		return nil, nil, errs
	}
	next.Version = cur.Version + 1
	next.UpdatedAt = timestamppb.New(now.UTC().Truncate(time.Microsecond))
	return next, changed, nil
}

// errVersion is a failed optimistic-concurrency check.
type errVersion struct{ want, have int64 }

func (e errVersion) Error() string {
	return fmt.Sprintf("patient is at version %d, not %d", e.have, e.want) // text
}

// Fingerprint identifies a registration request, so that a replay under the
// same idempotency key can be told from a different request reusing it.
func Fingerprint(in *messages.PatientRecord) []byte {
	p := proto.Clone(in).(*messages.PatientRecord)
	normalize(p)
	p.Id, p.Version, p.CreatedAt, p.UpdatedAt = "", 0, nil, nil
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	sum := sha256.Sum256(b)
	return sum[:]
}

func normalize(p *messages.PatientRecord) {
	p.Idnp = strings.TrimSpace(p.Idnp)
	p.GivenName = strings.TrimSpace(p.GivenName)
	p.FamilyName = strings.TrimSpace(p.FamilyName)
	p.BirthDate = strings.TrimSpace(p.BirthDate)
	p.Phone = strings.TrimSpace(p.Phone)
	p.Email = strings.TrimSpace(p.Email)
	for _, a := range p.Allergies {
		if a != nil {
			a.Substance = strings.TrimSpace(a.Substance)
			a.Reaction = strings.TrimSpace(a.Reaction)
			a.AtcCode = strings.ToUpper(strings.TrimSpace(a.AtcCode))
		}
	}
}

// checkFields checks every field but the IDNP (fixed at registration).
func checkFields(p *messages.PatientRecord, now time.Time) ValidationError {
	var errs validate.Errors
	errs.Text("given_name", p.GivenName, MaxNameRunes, true)
	errs.Text("family_name", p.FamilyName, MaxNameRunes, true)
	if p.BirthDate == "" {
		errs.Add("birth_date", "is required")
	} else if d, err := time.Parse(time.DateOnly, p.BirthDate); err != nil {
		errs.Add("birth_date", "must be a date YYYY-MM-DD")
	} else if d.After(now) {
		errs.Add("birth_date", "must not be in the future")
	} else if d.Before(earliestBirth) {
		errs.Add("birth_date", "must not be before 1900-01-01")
	}
	if _, ok := messages.Sex_name[int32(p.Sex)]; !ok || p.Sex == messages.Sex_SEX_UNSPECIFIED {
		errs.Add("sex", "is required: female, male, other or unknown")
	}
	errs.Phone("phone", p.Phone)
	errs.Email("email", p.Email)
	if _, ok := messages.BloodType_name[int32(p.BloodType)]; !ok {
		errs.Add("blood_type", "must be one of O-, O+, A-, A+, B-, B+, AB-, AB+")
	}
	if len(p.Allergies) > MaxAllergies {
		errs.Add("allergies", fmt.Sprintf("must list at most %d allergies", MaxAllergies))
		return errs
	}
	seen := map[string]int{}
	for i, a := range p.Allergies {
		field := fmt.Sprintf("allergies[%d]", i)
		if a == nil {
			errs.Add(field, "is required")
			continue
		}
		errs.Text(field+".substance", a.Substance, MaxSubstanceRunes, true)
		errs.Text(field+".reaction", a.Reaction, MaxReactionRunes, false)
		if _, ok := messages.AllergySeverity_name[int32(a.Severity)]; !ok || a.Severity == messages.AllergySeverity_ALLERGY_SEVERITY_UNSPECIFIED {
			errs.Add(field+".severity", "is required: mild, moderate or severe")
		}
		if a.AtcCode != "" && !interactions.ValidATC(a.AtcCode) {
			errs.Add(field+".atc_code", "must be an ATC code of a substance or class, such as J01CA04 or J01C")
		}
		key := strings.ToLower(a.Substance)
		if j, dup := seen[key]; dup && key != "" {
			errs.Add(field+".substance", fmt.Sprintf("repeats allergies[%d]", j))
		}
		seen[key] = i
	}
	return errs
}
