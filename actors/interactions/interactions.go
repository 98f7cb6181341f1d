// Package interactions finds drug-drug interactions for a prescription.
// The rules are data behind the Checker interface, so a licensed knowledge
// base can replace the bundled table later. The table is the 15
// high-priority pairs of Phansalkar et al. (JAMIA 2012), with WHO ATC codes
// (ddi-high-priority.csv, copied from shared/data; see its README there).
// It is not a complete interaction knowledge base. Allergies are checked
// through a small allergen dictionary (allergens.go): free-text substances
// in three languages mapped to ATC classes, and the classes that
// cross-react.
package interactions

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Drug is a medication as a prescription names it.
type Drug struct {
	// ATC is the WHO ATC code, level 5 for a substance (N06AB03).
	ATC  string
	Name string
}

// Warning is one interaction between two drugs, or between a drug and a
// recorded allergy.
type Warning struct {
	Kind     string // interaction or allergy
	Rule     string // the rule's id in its knowledge base
	Severity string // contraindicated, major, moderate, minor
	// Drug is the new drug, Other the one it interacts with (as prescribed).
	Drug, Other Drug
	// ClassA and ClassB are the rule's two sides, as the source names them.
	ClassA, ClassB string
	Effect, Advice string
	Source         string
}

// Severities that refuse a prescription unless an override reason is given.
var Blocking = map[string]bool{"contraindicated": true, "major": true}

// Checker finds the interactions of drug with others, and the warnings
// it meets in the patient's allergies.
type Checker interface {
	Check(drug Drug, others []Drug) []Warning
	CheckAllergies(drug Drug, allergies []Allergy) []Warning
}

// rule is one row: any member of A with any member of B, either way round.
type rule struct {
	id, severity, classA, classB, effect, advice, source string
	a, b                                                 []string // ATC codes or groups, matched as prefixes
}

// Table is a Checker over rows of ATC code sets, with an allergen
// dictionary for the allergies.
type Table struct {
	rules     []rule
	allergens *Allergens
}

var atcPattern = regexp.MustCompile(`^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$`)

// ValidATC reports whether code is an ATC code of any level (J, J01, J01C,
// J01CA, J01CA04).
func ValidATC(code string) bool { return atcPattern.MatchString(code) }

//go:embed ddi-high-priority.csv
var highPriority string

// HighPriority is the bundled table, with the bundled allergen dictionary.
func HighPriority() *Table {
	t, err := Load(strings.NewReader(highPriority))
	if err != nil {
		panic(fmt.Sprintf("interactions: the bundled table does not load: %v", err))
	}
	t.allergens = BundledAllergens()
	return t
}

// WithAllergens is t checking allergies with another dictionary.
func (t *Table) WithAllergens(a *Allergens) *Table {
	out := *t
	out.allergens = a
	return &out
}

// Load reads a table in the bundled CSV's columns: id, drug_a, atc_a,
// drug_b, atc_b, severity, effect, management, source; codes joined with |.
func Load(r io.Reader) (*Table, error) {
	cr := csv.NewReader(r)
	head, err := cr.Read()
	if err != nil {
		return nil, err
	}
	want := "id,drug_a,atc_a,drug_b,atc_b,severity,effect,management,source"
	if strings.Join(head, ",") != want {
		return nil, fmt.Errorf("header %q, want %q", strings.Join(head, ","), want)
	}
	t := &Table{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			return nil, err
		}
		if _, err := strconv.Atoi(rec[0]); err != nil {
			return nil, fmt.Errorf("line %d: id %q", line, rec[0])
		}
		codes := func(s string) ([]string, error) {
			if s == "" {
				return nil, nil // no ATC fits this class: the rule cannot match by code
			}
			var out []string
			for _, c := range strings.Split(s, "|") {
				if !atcPattern.MatchString(c) {
					return nil, fmt.Errorf("line %d: ATC code %q", line, c)
				}
				out = append(out, c)
			}
			return out, nil
		}
		a, err := codes(rec[2])
		if err != nil {
			return nil, err
		}
		b, err := codes(rec[4])
		if err != nil {
			return nil, err
		}
		t.rules = append(t.rules, rule{id: rec[0], classA: rec[1], a: a, classB: rec[3], b: b,
			severity: rec[5], effect: rec[6], advice: rec[7], source: rec[8]})
	}
}

func matches(code string, set []string) bool {
	for _, c := range set {
		if strings.HasPrefix(code, c) {
			return true
		}
	}
	return false
}

// Check lists every rule drug meets with each of others, in rule order.
func (t *Table) Check(drug Drug, others []Drug) []Warning {
	var out []Warning
	code := strings.ToUpper(drug.ATC)
	for _, o := range others {
		other := strings.ToUpper(o.ATC)
		for _, r := range t.rules {
			if (matches(code, r.a) && matches(other, r.b)) || (matches(code, r.b) && matches(other, r.a)) {
				out = append(out, Warning{Kind: "interaction", Rule: r.id, Severity: r.severity, Drug: drug, Other: o, ClassA: r.classA, ClassB: r.classB,
					Effect: r.effect, Advice: r.advice, Source: r.source})
			}
		}
	}
	return out
}

// Rules is the number of rules in the table.
func (t *Table) Rules() int { return len(t.rules) }

// Allergy is a recorded allergy as the check sees it.
type Allergy struct {
	Substance string
	// ATC is the substance's or its class's ATC code; "" when unknown.
	ATC string
	// Severity is mild, moderate or severe.
	Severity string
}
