package patient

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

var today = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func valid() *messages.PatientRecord {
	return &messages.PatientRecord{
		Idnp: "2005042129809", GivenName: " Ana ", FamilyName: "Rusu", BirthDate: "1985-02-28",
		Sex: messages.Sex_SEX_FEMALE, Phone: "+37369123456", Email: "ana@example.md",
		BloodType: messages.BloodType_BLOOD_TYPE_O_POS,
		Allergies: []*messages.Allergy{{Substance: "latex", Severity: messages.AllergySeverity_ALLERGY_SEVERITY_MILD}},
	}
}

func fields(err error) []string {
	var v ValidationError
	if !errors.As(err, &v) {
		return nil
	}
	var out []string
	for _, f := range v {
		out = append(out, f.Field)
	}
	return out
}

func TestNewRecord(t *testing.T) {
	rec, err := NewRecord("id-1", valid(), today)
	if err != nil {
		t.Fatalf("NewRecord(valid) = %v", err)
	}
	if rec.Id != "id-1" || rec.Version != 1 || rec.GivenName != "Ana" || !rec.CreatedAt.AsTime().Equal(today) {
		t.Fatalf("NewRecord(valid) = %v, want id-1, version 1, trimmed name, created now", rec)
	}
	tests := []struct {
		name   string
		change func(p *messages.PatientRecord)
		want   string // the offending field
	}{
		{"bad check digit", func(p *messages.PatientRecord) { p.Idnp = "2005042129808" }, "idnp"},
		{"missing given name", func(p *messages.PatientRecord) { p.GivenName = "  " }, "given_name"},
		{"long family name", func(p *messages.PatientRecord) { p.FamilyName = strings.Repeat("é", MaxNameRunes+1) }, "family_name"},
		{"control character", func(p *messages.PatientRecord) { p.FamilyName = "Ru\x00su" }, "family_name"},
		{"not a date", func(p *messages.PatientRecord) { p.BirthDate = "28.02.1985" }, "birth_date"},
		{"impossible date", func(p *messages.PatientRecord) { p.BirthDate = "1985-02-30" }, "birth_date"},
		{"future birth", func(p *messages.PatientRecord) { p.BirthDate = "2026-11-24" }, "birth_date"},
		{"before 1900", func(p *messages.PatientRecord) { p.BirthDate = "1899-12-31" }, "birth_date"},
		{"no sex", func(p *messages.PatientRecord) { p.Sex = messages.Sex_SEX_UNSPECIFIED }, "sex"},
		{"unknown sex value", func(p *messages.PatientRecord) { p.Sex = 99 }, "sex"},
		{"local phone", func(p *messages.PatientRecord) { p.Phone = "069123456" }, "phone"},
		{"email with name", func(p *messages.PatientRecord) { p.Email = "Ana <ana@example.md>" }, "email"},
		{"email without domain", func(p *messages.PatientRecord) { p.Email = "ana" }, "email"},
		{"unknown blood type", func(p *messages.PatientRecord) { p.BloodType = 42 }, "blood_type"},
		{"allergy without substance", func(p *messages.PatientRecord) { p.Allergies[0].Substance = "" }, "allergies[0].substance"},
		{"allergy without severity", func(p *messages.PatientRecord) { p.Allergies[0].Severity = 0 }, "allergies[0].severity"},
		{"repeated allergy", func(p *messages.PatientRecord) {
			p.Allergies = append(p.Allergies, &messages.Allergy{Substance: "LATEX", Severity: messages.AllergySeverity_ALLERGY_SEVERITY_SEVERE})
		}, "allergies[1].substance"},
	}
	for _, tt := range tests {
		p := valid()
		tt.change(p)
		_, err := NewRecord("id-1", p, today)
		if got := fields(err); len(got) != 1 || got[0] != tt.want {
			t.Errorf("%s: NewRecord fields = %v (%v), want [%s]", tt.name, got, err, tt.want)
		}
	}
	p := valid()
	p.Phone, p.Email, p.BloodType, p.Allergies = "", "", 0, nil
	if _, err := NewRecord("id-1", p, today); err != nil {
		t.Errorf("NewRecord(without optional fields) = %v", err)
	}
}

func update(paths []string, p *messages.PatientRecord, version int64) *messages.UpdatePatientRequest {
	return &messages.UpdatePatientRequest{ExpectedVersion: version, Patient: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}
}

func TestApplyUpdate(t *testing.T) {
	cur, err := NewRecord("id-1", valid(), today)
	if err != nil {
		t.Fatal(err)
	}
	later := today.Add(time.Hour)
	next, changed, err := ApplyUpdate(cur, update([]string{"phone", "blood_type"}, &messages.PatientRecord{Phone: "+37378000000"}, 1), later)
	if err != nil {
		t.Fatalf("ApplyUpdate = %v", err)
	}
	if next.Phone != "+37378000000" || next.BloodType != 0 || next.Email != cur.Email || next.Version != 2 ||
		!next.UpdatedAt.AsTime().Equal(later) || !next.CreatedAt.AsTime().Equal(today) {
		t.Fatalf("ApplyUpdate = %v", next)
	}
	if strings.Join(changed, ",") != "phone,blood_type" {
		t.Fatalf("changed = %v", changed)
	}
	if cur.Phone != "+37369123456" || cur.Version != 1 {
		t.Fatalf("ApplyUpdate changed its input: %v", cur)
	}

	_, _, err = ApplyUpdate(cur, update([]string{"phone"}, &messages.PatientRecord{}, 7), later)
	var stale errVersion
	if !errors.As(err, &stale) {
		t.Fatalf("ApplyUpdate(stale version) = %v, want errVersion", err)
	}
	tests := []struct {
		paths []string
		p     *messages.PatientRecord
		want  string
	}{
		{nil, &messages.PatientRecord{}, "update_mask"},
		{[]string{"idnp"}, &messages.PatientRecord{Idnp: "0000000000000"}, "idnp"},
		{[]string{"weight"}, &messages.PatientRecord{}, "weight"},
		{[]string{"given_name"}, &messages.PatientRecord{}, "given_name"},
		{[]string{"email"}, &messages.PatientRecord{Email: "nope"}, "email"},
	}
	for _, tt := range tests {
		_, _, err := ApplyUpdate(cur, update(tt.paths, tt.p, 0), later)
		if got := fields(err); len(got) != 1 || got[0] != tt.want {
			t.Errorf("ApplyUpdate(%v) fields = %v (%v), want [%s]", tt.paths, got, err, tt.want)
		}
	}
}

func TestFingerprintIgnoresServerFields(t *testing.T) {
	a := valid()
	b := proto.Clone(a).(*messages.PatientRecord)
	b.Id, b.Version, b.GivenName = "other", 9, "Ana" // trimmed the same
	if string(Fingerprint(a)) != string(Fingerprint(b)) {
		t.Fatal("Fingerprint differs for the same registration")
	}
	b.Phone = "+37300000000"
	if string(Fingerprint(a)) == string(Fingerprint(b)) {
		t.Fatal("Fingerprint is the same for different registrations")
	}
}

func BenchmarkNewRecord(b *testing.B) {
	in := valid()
	for b.Loop() {
		if _, err := NewRecord("id-1", in, today); err != nil {
			b.Fatal(err)
		}
	}
}
