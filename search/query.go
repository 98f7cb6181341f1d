package search

import (
	"strings"
	"unicode"

	"github.com/caregrid/caregrid/persistence"
)

// Query limits.
const (
	MinNameRunes    = 2   // a folded name shorter than this finds too much
	MinIDNPPrefix   = 6   // digits of an IDNP prefix
	MaxQueryRunes   = 100 // what a person types
	DefaultPageSize = 20
	MaxPageSize     = 100
	MaxOffset       = 500 // a search is for finding, not for walking the register
)

// ErrQuery is a query that would find nothing useful (too short, or only
// punctuation).
type ErrQuery string

func (e ErrQuery) Error() string { return string(e) }

// Parse reads what a person typed: digits alone are an IDNP prefix (6 to
// 13 digits) and a phone number; anything with letters is a name, folded.
func Parse(q string) (persistence.PatientQuery, error) {
	q = strings.TrimSpace(q)
	if n := len([]rune(q)); n > MaxQueryRunes {
		return persistence.PatientQuery{}, ErrQuery("q is at most 100 characters")
	}
	if !strings.ContainsFunc(q, unicode.IsLetter) {
		d := Digits(q)
		if len(d) < MinIDNPPrefix {
			return persistence.PatientQuery{}, ErrQuery("q needs at least 6 digits of an IDNP or a phone number, or a name")
		}
		out := persistence.PatientQuery{Phone: Phone(q)}
		if len(d) <= 13 {
			out.IDNPPrefix = d
		}
		return out, nil
	}
	name := Fold(q)
	if len([]rune(strings.ReplaceAll(name, " ", ""))) < MinNameRunes {
		return persistence.PatientQuery{}, ErrQuery("q needs at least 2 letters of a name")
	}
	return persistence.PatientQuery{Name: name}, nil
}
