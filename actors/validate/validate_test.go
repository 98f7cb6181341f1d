package validate

import (
	"strings"
	"testing"
)

func TestChecks(t *testing.T) {
	var v Errors
	v.Text("name", "", 10, true)
	v.Text("name2", strings.Repeat("ă", 11), 10, true)
	v.Text("name3", "a\tb", 10, false)
	v.Text("ok", "Ana", 10, true)
	v.Text("optional", "", 10, false)
	v.Email("email", "Ana <a@b.md>")
	v.Email("email2", "a@b.md")
	v.Phone("phone", "069123456")
	v.Phone("phone2", "+37369123456")
	v.Zone("zone", "Mars/Olympus")
	if loc := v.Zone("zone2", "Europe/Chisinau"); loc == nil {
		t.Error("Zone(Europe/Chisinau) = nil")
	}
	v.Zone("zone3", "Local")
	var got []string
	for _, e := range v {
		got = append(got, e.Field)
	}
	if want := "name,name2,name3,email,phone,zone,zone3"; strings.Join(got, ",") != want {
		t.Fatalf("fields = %v, want %s", got, want)
	}
	if (Errors{}).Err() != nil || v.Err() == nil {
		t.Fatal("Err: empty must be nil, non-empty an error")
	}
}
