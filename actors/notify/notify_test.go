package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/persistence"
)

// Every event renders in every language, with a subject, an email text,
// an HTML part and a short text, and the short text (SMS, push: channels
// that are not private) names neither the doctor nor the clinic.
func TestEveryEventRendersInEveryLanguage(t *testing.T) {
	tm, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	v := View{PatientName: "Maria", DoctorName: "Elena Munteanu", ClinicName: "Spitalul Clinic Republican",
		Start: "03.12.2026 10:00 EET", PreviousStart: "03.12.2026 09:00 EET", Expires: "05.12.2026 10:00 EET", By: "clinic",
		PortalURL: "https://portal.hospital.example"}
	subjects := map[string]string{}
	for _, lang := range Languages {
		for _, event := range Events {
			r, err := tm.Render(lang, event, v)
			if err != nil {
				t.Fatalf("%s/%s: %v", lang, event, err)
			}
			if r.Subject == "" || r.Text == "" || r.Short == "" || !strings.Contains(r.HTML, `<html lang="`+lang+`">`) ||
				!strings.Contains(r.HTML, `href="https://portal.hospital.example"`) || strings.Contains(r.Subject, "\n") {
				t.Fatalf("%s/%s rendered %+v", lang, event, r)
			}
			if strings.Contains(r.Short, "Munteanu") || strings.Contains(r.Short, "Spitalul") {
				t.Fatalf("%s/%s: the short text names the doctor or clinic: %q", lang, event, r.Short)
			}
			if other, ok := subjects[event+r.Subject]; ok {
				t.Fatalf("%s/%s has the subject of %s: %q", lang, event, other, r.Subject)
			}
			subjects[event+r.Subject] = lang
		}
	}
	// HTML is escaped: a name is text, not markup.
	v.PatientName = `<script>alert(1)</script>`
	r, err := tm.Render("en", AppointmentBooked, v)
	if err != nil || strings.Contains(r.HTML, "<script>") {
		t.Fatalf("a name with markup: %v %s", err, r.HTML)
	}
}

// An operator's file replaces the built-in one of the same path; a file
// that breaks the templates is refused at start, not at send.
func TestAnOperatorsTemplatesOverrideTheBuiltIn(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	custom := `{{define "subject"}}Spitalul vă așteaptă pe {{.Start}}{{end}}{{define "text"}}Vă așteptăm.{{end}}{{define "short"}}Vă așteptăm pe {{.Start}}.{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "ro", AppointmentReminder+".tmpl"), []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	tm, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tm.Render("ro", AppointmentReminder, View{Start: "03.12.2026 10:00"})
	if err != nil || r.Subject != "Spitalul vă așteaptă pe 03.12.2026 10:00" || r.Short != "Vă așteptăm pe 03.12.2026 10:00." {
		t.Fatalf("overridden: %+v %v", r, err)
	}
	if r, _ := tm.Render("ru", AppointmentReminder, View{Start: "x"}); !strings.Contains(r.Subject, "Напоминание") {
		t.Fatalf("the Russian reminder should stay built in: %q", r.Subject)
	}
	if err := os.WriteFile(filepath.Join(dir, "ro", AppointmentBooked+".tmpl"), []byte(`{{define "subject"}}only a subject{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), `no "text"`) {
		t.Fatalf("a template without its text: %v", err)
	}
}

func TestQuietHoursHoldUntilTheirEnd(t *testing.T) {
	zone, _ := time.LoadLocation("Europe/Chisinau")
	at := func(day, h, m int) time.Time { return time.Date(2026, 12, day, h, m, 0, 0, zone) }
	night := persistence.NotificationPreferences{QuietStart: 22 * 60, QuietEnd: 8 * 60, TimeZone: "Europe/Chisinau"}
	lunch := persistence.NotificationPreferences{QuietStart: 13 * 60, QuietEnd: 14 * 60, TimeZone: "Europe/Chisinau"}
	none := persistence.NotificationPreferences{QuietStart: 0, QuietEnd: 0, TimeZone: "Europe/Chisinau"}
	for _, tc := range []struct {
		p        persistence.NotificationPreferences
		t, until time.Time
	}{
		{night, at(3, 23, 30), at(4, 8, 0)},
		{night, at(3, 2, 0), at(3, 8, 0)},
		{night, at(3, 8, 0), at(3, 8, 0)},
		{night, at(3, 21, 59), at(3, 21, 59)},
		{lunch, at(3, 13, 30), at(3, 14, 0)},
		{lunch, at(3, 12, 0), at(3, 12, 0)},
		{none, at(3, 3, 0), at(3, 3, 0)},
	} {
		if got := QuietUntil(tc.p, tc.t.UTC()); !got.Equal(tc.until) {
			t.Errorf("QuietUntil(%d-%d, %s) = %s, want %s", tc.p.QuietStart, tc.p.QuietEnd, tc.t, got.In(zone), tc.until)
		}
	}
}

func TestPreferencesAreChecked(t *testing.T) {
	good := DefaultPreferences("p", "ro")
	var errs validate.Errors
	ValidatePreferences(good, &errs)
	if len(errs) != 0 {
		t.Fatalf("the defaults are refused: %v", errs)
	}
	bad := good
	bad.Language, bad.Channels, bad.TimeZone = "de", []string{"email", "email", "fax"}, "Mars/Olympus"
	ValidatePreferences(bad, &errs)
	fields := map[string]int{}
	for _, e := range errs {
		fields[e.Field]++
	}
	if fields["language"] != 1 || fields["channels"] != 2 || fields["time_zone"] != 1 {
		t.Fatalf("refusals: %v", errs)
	}
	for in, want := range map[string]int{"00:00": 0, "08:30": 510, "23:59": 1439} {
		if got, err := ParseClock(in); err != nil || got != want || Clock(got) != in {
			t.Errorf("ParseClock(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"24:00", "8:30", "08:60", "0830", "", "-1:00"} {
		if _, err := ParseClock(in); err == nil {
			t.Errorf("ParseClock(%q) accepted", in)
		}
	}
}

// Backoff doubles from First up to Max, each pause within ±50 %.
func TestBackoffDoublesWithJitter(t *testing.T) {
	r := Retry{First: time.Second, Max: 8 * time.Second}
	for attempt, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := r.Backoff(attempt)
			if d < base/2 || d > base*3/2 {
				t.Fatalf("Backoff(%d) = %s, want within %s±50%%", attempt, d, base)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("Backoff(%d) has no jitter: %v", attempt, seen)
		}
	}
}

func TestSubscriptionsAreChecked(t *testing.T) {
	var errs validate.Errors
	ValidSubscription("http://push.example/x", "AAAA", "short", &errs)
	fields := map[string]bool{}
	for _, e := range errs {
		fields[e.Field] = true
	}
	if !fields["endpoint"] || !fields["keys.p256dh"] || !fields["keys.auth"] {
		t.Fatalf("refusals: %v", errs)
	}
}
