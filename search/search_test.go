package search

import (
	"context"
	"fmt"
	"testing"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
)

// TestSearchFindsPatientsAsPeopleTypeThem: the read model, filled through
// View, answers the ways a receptionist types a name, an IDNP or a phone,
// best match first, and never lists what does not match.
func TestSearchFindsPatientsAsPeopleTypeThem(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	people := []struct{ id, given, family, idnp, phone string }{
		{"00000000-0000-4000-8000-000000000001", "Ion", "Popescu", "2005042129809", "+373 69 000 001"},
		{"00000000-0000-4000-8000-000000000002", "Ștefan", "Ciobanu", "2001001001001", "069111222"},
		{"00000000-0000-4000-8000-000000000003", "Мария", "Попеску", "2002002002002", ""},
		{"00000000-0000-4000-8000-000000000004", "Gheorghe", "Țurcanu", "2003003003003", "+37322123456"},
		{"00000000-0000-4000-8000-000000000005", "Ion", "Popa", "2004004004004", ""},
		{"00000000-0000-4000-8000-000000000006", "Elena", "Rotaru", "2005042120000", ""},
	}
	for _, p := range people {
		v := View(&messages.PatientRecord{Id: p.id, GivenName: p.given, FamilyName: p.family, Idnp: p.idnp, Phone: p.phone,
			BirthDate: "1980-01-01", Sex: messages.Sex_SEX_FEMALE, Version: 1})
		if err := db.PutPatientViews(ctx, []persistence.PatientView{v}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(q string) string {
		t.Helper()
		pq, err := Parse(q)
		if err != nil {
			t.Fatalf("Parse(%q): %v", q, err)
		}
		pq.Limit = 10
		found, err := db.SearchPatients(ctx, pq)
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		out := ""
		for _, f := range found {
			out += f.PatientID[len(f.PatientID)-1:]
		}
		return out
	}
	for _, tt := range []struct {
		q, want string // want: the last digits of the ids found, in order
	}{
		{"Popescu", "13"}, {"popescu", "13"}, {"Popesku", "13"}, {"Попеску", "13"}, {"POPESCU", "13"},
		{"Ion Popescu", "135"}, {"Popescu Ion", "135"}, // the person first, then the namesakes
		{"Popesco", "13"}, {"Ciobnu", "2"}, {"Rotatu", "6"}, // a typo
		{"Popes", "13"}, {"Ciob", "2"}, {"Ion Popes", "135"}, // still typing: the words a name starts with
		{"Stefan Ciobanu", "2"}, {"Ştefan", "2"}, {"Штефан", "2"}, {"ciobanu", "2"}, {"Чобану", "2"},
		{"Turcanu", "4"}, {"Ţurcanu", "4"}, {"Георге", "4"},
		{"Maria Popescu", "31"},                                       // the closer name first
		{"2005042129809", "1"}, {"200504", "61"}, {"2005 0421", "61"}, // in IDNP order
		{"+373 69 000 001", "1"}, {"069000001", "1"}, {"069 111 222", "2"}, {"022 123 456", "4"},
		{"Rotaru", "6"}, {"Ionescu", ""}, {"Vasile Lungu", ""},
	} {
		if got := ids(tt.q); got != tt.want {
			t.Errorf("search %q found %q, want %q", tt.q, got, tt.want)
		}
	}
	// A rename moves the patient from the old words to the new; an older
	// event delivered late changes nothing.
	put := func(family string, version int64) {
		t.Helper()
		v := View(&messages.PatientRecord{Id: people[5].id, GivenName: "Elena", FamilyName: family, Idnp: people[5].idnp,
			BirthDate: "1980-01-01", Sex: messages.Sex_SEX_FEMALE, Version: version})
		if err := db.PutPatientViews(ctx, []persistence.PatientView{v}); err != nil {
			t.Fatal(err)
		}
	}
	put("Lungu", 2)
	put("Rotaru", 1)
	for q, want := range map[string]string{"Rotaru": "", "Lungu": "6", "Elena Lungu": "6", "Elena Rotaru": "6"} {
		if got := ids(q); got != want {
			t.Errorf("after the rename, %q found %q, want %q", q, got, want)
		}
	}
	for _, bad := range []string{"", "a", "12345", "!!", fmt.Sprintf("%0101d", 1)} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
