package calendar

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits on a doctor's profile.
const (
	MaxNameRunes      = 100
	MaxSpecialtyRunes = 100
	// DefaultSlotMinutes is a new doctor's slot length when none is given.
	DefaultSlotMinutes = 15
	// MaxSlotsWindow bounds one free-slots query.
	MaxSlotsWindow = 31 * 24 * time.Hour
)

// DoctorUpdatable lists the update_mask paths a profile change may name.
var DoctorUpdatable = []string{"given_name", "family_name", "specialty", "clinic_id", "email", "phone", "time_zone", "slot_minutes"}

// VersionError is a failed optimistic-concurrency check.
type VersionError struct{ Want, Have int64 }

func (e VersionError) Error() string {
	return fmt.Sprintf("the resource is at version %d, not %d", e.Have, e.Want) // text
}

func normalizeDoctor(d *messages.DoctorRecord) {
	d.GivenName = strings.TrimSpace(d.GivenName)
	d.FamilyName = strings.TrimSpace(d.FamilyName)
	d.Specialty = strings.ToLower(strings.TrimSpace(d.Specialty))
	d.ClinicId = strings.ToLower(strings.TrimSpace(d.ClinicId))
	d.Email = strings.TrimSpace(d.Email)
	d.Phone = strings.TrimSpace(d.Phone)
	d.TimeZone = strings.TrimSpace(d.TimeZone)
}

func checkDoctor(d *messages.DoctorRecord) validate.Errors {
	var errs validate.Errors
	errs.Text("given_name", d.GivenName, MaxNameRunes, true)
	errs.Text("family_name", d.FamilyName, MaxNameRunes, true)
	errs.Text("specialty", d.Specialty, MaxSpecialtyRunes, true)
	if !validate.ID(d.ClinicId) || len(d.ClinicId) != 36 {
		errs.Add("clinic_id", "must be the id of a clinic")
	}
	errs.Email("email", d.Email)
	errs.Phone("phone", d.Phone)
	errs.Zone("time_zone", d.TimeZone)
	if s := d.SlotMinutes; s < MinSlotMinutes || s > MaxSlotMinutes || s%CellMinutes != 0 {
		errs.Add("slot_minutes", fmt.Sprintf("must be a multiple of %d from %d to %d", CellMinutes, MinSlotMinutes, MaxSlotMinutes))
	}
	return errs
}

// NewDoctor validates a new doctor's profile and returns the record to
// store: trimmed, version 1, created now. A doctor starts with no hours.
func NewDoctor(id string, in *messages.DoctorRecord, now time.Time) (*messages.DoctorRecord, error) {
	if in == nil {
		return nil, validate.Errors{{Field: "doctor", Message: "is required"}}
	}
	d := proto.Clone(in).(*messages.DoctorRecord)
	normalizeDoctor(d)
	if d.SlotMinutes == 0 {
		d.SlotMinutes = DefaultSlotMinutes
	}
	if err := checkDoctor(d).Err(); err != nil {
		return nil, err
	}
	d.Id, d.Version = id, 1
	ts := timestamppb.New(now.UTC().Truncate(time.Microsecond))
	d.CreatedAt, d.UpdatedAt = ts, ts
	return d, nil
}

// ApplyDoctorUpdate returns cur changed by the fields the mask names.
func ApplyDoctorUpdate(cur *messages.DoctorRecord, req *messages.UpdateDoctorRequest, now time.Time) (*messages.DoctorRecord, error) {
	if req.ExpectedVersion != 0 && req.ExpectedVersion != cur.Version {
		return nil, VersionError{Want: req.ExpectedVersion, Have: cur.Version}
	}
	in := req.GetDoctor()
	if in == nil {
		in = &messages.DoctorRecord{}
	}
	next := proto.Clone(cur).(*messages.DoctorRecord)
	var errs validate.Errors
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		errs.Add("update_mask", "names no field to change")
	}
	for _, p := range paths {
		switch p {
		case "given_name":
			next.GivenName = in.GivenName
		case "family_name":
			next.FamilyName = in.FamilyName
		case "specialty":
			next.Specialty = in.Specialty
		case "clinic_id":
			next.ClinicId = in.ClinicId
		case "email":
			next.Email = in.Email
		case "phone":
			next.Phone = in.Phone
		case "time_zone":
			next.TimeZone = in.TimeZone
		case "slot_minutes":
			next.SlotMinutes = in.SlotMinutes
		default:
			if !slices.Contains(DoctorUpdatable, p) {
				errs.Add(p, "cannot be changed")
			}
		}
	}
	normalizeDoctor(next)
	errs = append(errs, checkDoctor(next)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	next.Version = cur.Version + 1
	next.UpdatedAt = timestamppb.New(now.UTC().Truncate(time.Microsecond))
	return next, nil
}

var weekdays = map[string]time.Weekday{
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseAvailability turns the API's availability into working time in
// zone, listing every problem; slot_minutes 0 means defaultSlot.
func ParseAvailability(m *messages.Availability, zone *time.Location, defaultSlot int) (*Availability, error) {
	a := &Availability{Zone: zone, SlotMinutes: int(m.GetSlotMinutes()), Exceptions: map[string][]Range{}}
	if a.SlotMinutes == 0 {
		a.SlotMinutes = defaultSlot
	}
	var errs validate.Errors
	ranges := func(field string, in []*messages.TimeRange) []Range {
		out := make([]Range, 0, len(in))
		for j, tr := range in {
			s, err1 := ParseClock(tr.GetStart())
			e, err2 := ParseClock(tr.GetEnd())
			if err1 != nil || err2 != nil || s == 24*60 {
				errs.Add(fmt.Sprintf("%s.ranges[%d]", field, j), "start and end must be HH:MM (end may be 24:00)")
				continue
			}
			out = append(out, Range{s, e})
		}
		return out
	}
	seen := map[time.Weekday]bool{}
	for i, w := range m.GetWeekly() {
		field := fmt.Sprintf("weekly[%d]", i)
		d, ok := weekdays[strings.ToLower(w.GetWeekday())]
		if !ok {
			errs.Add(field+".weekday", "must be monday, tuesday, wednesday, thursday, friday, saturday or sunday")
			continue
		}
		if seen[d] {
			errs.Add(field+".weekday", w.GetWeekday()+" is listed twice")
			continue
		}
		seen[d] = true
		a.Weekly[d] = ranges(field, w.GetRanges())
	}
	if len(m.GetExceptions()) > MaxExceptions {
		errs.Add("exceptions", fmt.Sprintf("must list at most %d dates", MaxExceptions))
	}
	for i, x := range m.GetExceptions() {
		field := fmt.Sprintf("exceptions[%d]", i)
		if _, err := time.Parse(time.DateOnly, x.GetDate()); err != nil {
			errs.Add(field+".date", "must be a date YYYY-MM-DD")
			continue
		}
		if _, dup := a.Exceptions[x.GetDate()]; dup {
			errs.Add(field+".date", x.GetDate()+" is listed twice")
			continue
		}
		a.Exceptions[x.GetDate()] = ranges(field, x.GetRanges())
	}
	errs = append(errs, a.Validate()...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// Fingerprint identifies a create request, so that a replay under the same
// idempotency key can be told from a different request reusing it.
func Fingerprint(m proto.Message) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	sum := sha256.Sum256(b)
	return sum[:]
}
