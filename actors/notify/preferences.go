package notify

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/persistence"
)

// Channels are the channels messages go out on.
var Channels = []string{"email", "sms", "push"}

// Languages are the languages every template exists in.
var Languages = []string{"ro", "ru", "en"}

// DefaultTimeZone is where quiet hours are kept when a patient has not
// said otherwise.
const DefaultTimeZone = "Europe/Chisinau"

// DefaultPreferences are a patient's preferences until they choose: every
// channel they have an address for, reminders on, quiet from 22:00 to
// 08:00, in the node's default language.
func DefaultPreferences(patientID, language string) persistence.NotificationPreferences {
	return persistence.NotificationPreferences{PatientID: patientID, Language: language, Channels: slices.Clone(Channels),
		Reminders: true, QuietStart: 22 * 60, QuietEnd: 8 * 60, TimeZone: DefaultTimeZone}
}

// ValidatePreferences adds to errs what is wrong with p, field by field.
func ValidatePreferences(p persistence.NotificationPreferences, errs *validate.Errors) {
	if !slices.Contains(Languages, p.Language) {
		errs.Add("language", "must be ro, ru or en")
	}
	for _, c := range p.Channels {
		if !slices.Contains(Channels, c) {
			errs.Add("channels", "each must be email, sms or push")
			break
		}
	}
	if hasDuplicates(p.Channels) {
		errs.Add("channels", "each channel at most once")
	}
	if _, err := time.LoadLocation(p.TimeZone); err != nil || p.TimeZone == "" || p.TimeZone == "Local" {
		errs.Add("time_zone", "must be an IANA time zone such as Europe/Chisinau")
	}
}

func hasDuplicates(xs []string) bool {
	s := slices.Clone(xs)
	slices.Sort(s)
	return len(slices.Compact(s)) != len(xs)
}

// ParseClock reads "HH:MM" as minutes after midnight.
func ParseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh > 23 || mm > 59 || hh < 0 || mm < 0 {
		return 0, fmt.Errorf("%q is not an HH:MM time", s)
	}
	return hh*60 + mm, nil
}

// Clock writes minutes after midnight as "HH:MM".
func Clock(minutes int) string { return fmt.Sprintf("%02d:%02d", minutes/60, minutes%60) }

// QuietUntil is when the patient's quiet hours around t end (t itself
// when t is not in them). Quiet hours may span midnight (22:00-08:00).
func QuietUntil(p persistence.NotificationPreferences, t time.Time) time.Time {
	if p.QuietStart == p.QuietEnd {
		return t
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	local := t.In(loc)
	minute := local.Hour()*60 + local.Minute()
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	at := func(day time.Time, m int) time.Time {
		return time.Date(day.Year(), day.Month(), day.Day(), m/60, m%60, 0, 0, loc)
	}
	if p.QuietStart < p.QuietEnd { // within one day, e.g. 13:00-15:00
		if minute >= p.QuietStart && minute < p.QuietEnd {
			return at(midnight, p.QuietEnd)
		}
		return t
	}
	switch { // across midnight, e.g. 22:00-08:00
	case minute >= p.QuietStart:
		return at(midnight.AddDate(0, 0, 1), p.QuietEnd)
	case minute < p.QuietEnd:
		return at(midnight, p.QuietEnd)
	}
	return t
}
