// Package validate holds the field checks every grain's pure rules share,
// and the error that lists what is wrong with a request, field by field,
// with fields named as the JSON API names them.
package validate

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
)

// FieldError says what is wrong with one field.
type FieldError struct {
	Field   string
	Message string
}

// Errors lists every problem found in a request; a non-nil Errors is never empty.
type Errors []FieldError

func (v Errors) Error() string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Add records a problem with field.
func (v *Errors) Add(field, message string) { *v = append(*v, FieldError{field, message}) }

// Err returns v as an error, or nil when it is empty.
func (v Errors) Err() error {
	if len(v) == 0 {
		return nil
	}
	return v
}

// Text checks a free-text field: valid UTF-8, at most max characters, no
// control characters, and present when required.
func (v *Errors) Text(field, s string, max int, required bool) {
	switch {
	case s == "" && required:
		v.Add(field, "is required")
	case !utf8.ValidString(s):
		v.Add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		v.Add(field, fmt.Sprintf("must be at most %d characters", max))
	case strings.ContainsFunc(s, unicode.IsControl):
		v.Add(field, "must not contain control characters")
	}
}

// MaxEmailBytes bounds an email address.
const MaxEmailBytes = 254

// Email checks an optional email address (a bare address, no display name).
func (v *Errors) Email(field, s string) {
	if s == "" {
		return
	}
	if len(s) > MaxEmailBytes {
		v.Add(field, fmt.Sprintf("must be at most %d characters", MaxEmailBytes))
	} else if a, err := mail.ParseAddress(s); err != nil || a.Address != s || a.Name != "" {
		v.Add(field, "must be an email address such as name@example.md")
	}
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// Phone checks an optional E.164 phone number.
func (v *Errors) Phone(field, s string) {
	if s != "" && !e164.MatchString(s) {
		v.Add(field, "must be in E.164 form, such as +37369123456")
	}
}

// Zone checks a required IANA time zone name and returns the zone.
func (v *Errors) Zone(field, s string) *time.Location {
	if s == "" {
		v.Add(field, "is required")
		return nil
	}
	loc, err := time.LoadLocation(s)
	if err != nil || s == "Local" {
		v.Add(field, "must be an IANA time zone such as Europe/Chisinau")
		return nil
	}
	return loc
}

// Reply turns err into the INVALID_ARGUMENT reply a grain gives: for
// Errors, metadata maps "field:<name>" to the first problem with that field
// (the edge turns it into the problem's errors list).
func Reply(err error) *actorcluster.GrainErrorResponse {
	var v Errors
	if !errors.As(err, &v) {
		return messages.ErrInvalidArgument("%s", err.Error())
	}
	md := make(map[string]string, len(v))
	for _, f := range v {
		if _, dup := md["field:"+f.Field]; !dup {
			md["field:"+f.Field] = f.Message
		}
	}
	return messages.ErrInvalidArgument("the request is not valid").WithMetadata(md)
}

// LongText checks multi-line free text (notes): like Text, but line breaks
// and tabs are allowed.
func (v *Errors) LongText(field, s string, max int, required bool) {
	v.Text(field, strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s), max, required)
}

// ID reports whether s is a resource id in its one canonical form: a UUID
// as 36 lower-case characters. Other spellings of the same UUID (upper
// case, braces, "urn:uuid:") would name another grain for the same row,
// and some of them do not even parse as PostgreSQL's uuid.
func ID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		default:
			return false
		}
	}
	return true
}
