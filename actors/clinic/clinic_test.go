package clinic

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
)

func TestNew(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	const id = "11111111-1111-4111-8111-111111111111"
	c, err := New(id, &messages.ClinicRecord{Name: " Clinica 1 ", Address: "bd. Ștefan cel Mare 1", TimeZone: "Europe/Chisinau"}, now)
	if err != nil || c.Id != id || c.Name != "Clinica 1" || c.Version != 1 || !c.CreatedAt.AsTime().Equal(now) {
		t.Fatalf("New(valid) = %v, %v", c, err)
	}
	_, err = New("not-a-uuid", &messages.ClinicRecord{Address: strings.Repeat("a", MaxAddressRunes+1), TimeZone: "Local"}, now)
	var v validate.Errors
	if !errors.As(err, &v) {
		t.Fatalf("New(invalid) = %v, want validation errors", err)
	}
	var fields []string
	for _, f := range v {
		fields = append(fields, f.Field)
	}
	if got := strings.Join(fields, ","); got != "name,address,time_zone,id" {
		t.Fatalf("fields = %s", got)
	}
}
