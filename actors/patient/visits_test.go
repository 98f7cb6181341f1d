package patient

import (
	"errors"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestICD10Shape(t *testing.T) {
	for code, want := range map[string]bool{"J45": true, "J45.0": true, "S72.001A": true, "C4A.9": true, "Z99.89": true,
		"U07.1": false, "j45": false, "J4": false, "J45.": false, "J45.12345": false, "145": false, "J45 0": false} {
		if got := ValidICD10(code); got != want {
			t.Errorf("ValidICD10(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestNewVisitChecksEveryField(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	good := &messages.Visit{OccurredAt: timestamppb.New(now.Add(-time.Hour)), Reason: "cough", Notes: "line one\nline two",
		Diagnoses: []*messages.Diagnosis{{Code: " j45.0 ", Text: "asthma", Onset: "2026-11-01"}}}
	v, err := NewVisit(good, "p-1", "d-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if v.Id == "" || v.DoctorId != "d-1" || v.PatientId != "p-1" || v.Diagnoses[0].Code != "J45.0" ||
		v.Diagnoses[0].Status != messages.DiagnosisStatus_DIAGNOSIS_STATUS_ACTIVE || v.Diagnoses[0].Id == "" || !v.CreatedAt.AsTime().Equal(now) {
		t.Fatalf("visit = %v", v)
	}
	bad := &messages.Visit{OccurredAt: timestamppb.New(now.Add(time.Hour)), Reason: "", Notes: strings.Repeat("x", MaxNotesChars+1),
		AppointmentId: "nope", Diagnoses: []*messages.Diagnosis{{Code: "XYZ", Text: "", Status: -1, Onset: "2027-01-01"}}}
	_, err = NewVisit(bad, "p-1", "d-1", now)
	var ve validate.Errors
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	var fields []string
	for _, f := range ve {
		fields = append(fields, f.Field)
	}
	sort.Strings(fields)
	want := "appointment_id diagnoses[0].code diagnoses[0].onset diagnoses[0].status diagnoses[0].text notes occurred_at reason"
	if strings.Join(fields, " ") != want {
		t.Fatalf("fields = %v, want %s", fields, want)
	}
	unparsable := &messages.Visit{OccurredAt: &timestamppb.Timestamp{Seconds: math.MinInt64}, Reason: "x"}
	if _, err := NewVisit(unparsable, "p", "d", now); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("an unparsable instant: %v", err)
	}
	if _, err := NewVisit(&messages.Visit{Reason: "x"}, "p", "d", now); err == nil || !strings.Contains(err.Error(), "occurred_at: is required") {
		t.Fatalf("no instant: %v", err)
	}
}

func TestNewVaccinationChecksTheATCGroupAndDates(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for code, ok := range map[string]bool{"J07BX03": true, "j07bb02": true, "J07B": true, "J07BX": true, "J07": false, "J01CA04": false, "J07BX3": false} {
		_, err := NewVaccination(&messages.Vaccination{AtcCode: code, VaccineName: "v", Date: "2026-11-23", DoseNumber: 1}, "p", "d", now)
		if (err == nil) != ok {
			t.Errorf("code %s: err = %v, want ok=%v", code, err, ok)
		}
	}
	if _, err := NewVaccination(&messages.Vaccination{AtcCode: "J07BX03", VaccineName: "v", Date: "2026-11-24", DoseNumber: 1}, "p", "d", now); err == nil {
		t.Error("a dose dated tomorrow was accepted")
	}
}

func TestAVisitFitsItsAppointment(t *testing.T) {
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	appt := func(patient, doctor string, status messages.AppointmentStatus) *messages.AppointmentRecord {
		return &messages.AppointmentRecord{Id: "a", PatientId: patient, DoctorId: doctor, Status: status,
			Start: timestamppb.New(start), End: timestamppb.New(start.Add(30 * time.Minute))}
	}
	visit := func(at time.Time) *messages.Visit {
		return &messages.Visit{PatientId: "p", DoctorId: "d", AppointmentId: "a", OccurredAt: timestamppb.New(at)}
	}
	booked, done := messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, messages.AppointmentStatus_APPOINTMENT_STATUS_COMPLETED
	for _, tt := range []struct {
		name  string
		v     *messages.Visit
		a     *messages.AppointmentRecord
		field string // "": fits
	}{
		{"during it", visit(start.Add(10 * time.Minute)), appt("p", "d", done), ""},
		{"an hour early (checked in early)", visit(start.Add(-time.Hour)), appt("p", "d", booked), ""},
		{"no such appointment", visit(start), nil, "appointment_id"},
		{"another patient's", visit(start), appt("q", "d", done), "appointment_id"},
		{"another doctor's", visit(start), appt("p", "e", done), "appointment_id"},
		{"a cancelled one", visit(start), appt("p", "d", messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED), "appointment_id"},
		{"a missed one", visit(start), appt("p", "d", messages.AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW), "appointment_id"},
		{"the day before", visit(start.Add(-24 * time.Hour)), appt("p", "d", done), "occurred_at"},
		{"the day after", visit(start.Add(24 * time.Hour)), appt("p", "d", done), "occurred_at"},
	} {
		err := VisitFitsAppointment(tt.v, tt.a)
		var errs validate.Errors
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.field != "" && (!errors.As(err, &errs) || errs[0].Field != tt.field):
			t.Errorf("%s: = %v; want a refusal of %s", tt.name, err, tt.field)
		}
	}
}
