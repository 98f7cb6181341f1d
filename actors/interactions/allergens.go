package interactions

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// Allergens is the allergen dictionary: which ATC classes an allergy
// names, by its code or by its free-text substance in English, Romanian
// or Russian (allergens.csv), and which other classes cross-react with
// each (cross-reactivity.csv). Like the interaction table it is data, and
// a licensed terminology can replace it.
//
// A drug in the allergy's own class is a blocking warning (major, or
// contraindicated for the very substance or a severe allergy); a drug of
// a cross-reacting class is a lower-severity warning that does not block.
type Allergens struct {
	classes []allergenClass
	byName  map[string][]int // normalised name -> classes
	cross   []crossRule
}

type allergenClass struct {
	name  string
	codes []string // ATC prefixes
}

type crossRule struct {
	allergy                  int // the allergy's class
	drugs                    []string
	severity, effect, source string
}

//go:embed allergens.csv
var bundledAllergens string

//go:embed cross-reactivity.csv
var bundledCrossReactivity string

// BundledAllergens is the dictionary shipped with caregrid.
func BundledAllergens() *Allergens {
	a, err := LoadAllergens(strings.NewReader(bundledAllergens), strings.NewReader(bundledCrossReactivity))
	if err != nil {
		panic(fmt.Sprintf("interactions: the bundled allergen dictionary does not load: %v", err))
	}
	return a
}

// LoadAllergens reads a dictionary: classes (class, atc, names; codes and
// names joined with |) and cross-reactions (allergy_class, drug_atc,
// severity, effect, source).
func LoadAllergens(classes, cross io.Reader) (*Allergens, error) {
	rows, err := readCSV(classes, "class,atc,names")
	if err != nil {
		return nil, fmt.Errorf("allergen classes: %w", err)
	}
	a := &Allergens{byName: map[string][]int{}}
	index := map[string]int{}
	for n, r := range rows {
		codes, err := atcList(r[1])
		if err != nil {
			return nil, fmt.Errorf("allergen classes line %d: %w", n+2, err)
		}
		index[r[0]] = len(a.classes)
		for _, name := range strings.Split(r[2], "|") {
			key := normalName(name)
			if key == "" {
				return nil, fmt.Errorf("allergen classes line %d: an empty name", n+2)
			}
			a.byName[key] = append(a.byName[key], len(a.classes))
		}
		a.classes = append(a.classes, allergenClass{name: r[0], codes: codes})
	}
	rows, err = readCSV(cross, "allergy_class,drug_atc,severity,effect,source")
	if err != nil {
		return nil, fmt.Errorf("cross-reactivity: %w", err)
	}
	for n, r := range rows {
		class, ok := index[r[0]]
		if !ok {
			return nil, fmt.Errorf("cross-reactivity line %d: no class %q", n+2, r[0])
		}
		drugs, err := atcList(r[1])
		if err != nil {
			return nil, fmt.Errorf("cross-reactivity line %d: %w", n+2, err)
		}
		if Blocking[r[2]] || (r[2] != "moderate" && r[2] != "minor") {
			return nil, fmt.Errorf("cross-reactivity line %d: severity %q; want moderate or minor (cross-reactivity never blocks)", n+2, r[2])
		}
		a.cross = append(a.cross, crossRule{allergy: class, drugs: drugs, severity: r[2], effect: r[3], source: r[4]})
	}
	return a, nil
}

func readCSV(r io.Reader, header string) ([][]string, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != header {
		return nil, fmt.Errorf("want the header %q", header)
	}
	return rows[1:], nil
}

func atcList(s string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(s, "|") {
		if !atcPattern.MatchString(c) {
			return nil, fmt.Errorf("ATC code %q", c)
		}
		out = append(out, c)
	}
	return out, nil
}

// normalName is a substance name as the dictionary looks it up: lower
// case, single spaces, no punctuation at the ends.
func normalName(s string) string {
	s = strings.ToLower(strings.Join(strings.Fields(s), " "))
	return strings.TrimFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// ClassesOf names the classes an allergy belongs to: by its code (a class
// whose codes cover it, or that it covers), else by its substance, as a
// whole or by any of its words ("penicillin (rash)").
func (a *Allergens) ClassesOf(al Allergy) []string {
	var out []string
	for _, i := range a.classesOf(al) {
		out = append(out, a.classes[i].name)
	}
	return out
}

func (a *Allergens) classesOf(al Allergy) []int {
	if a == nil {
		return nil
	}
	var out []int
	add := func(is ...int) {
		for _, i := range is {
			if !containsInt(out, i) {
				out = append(out, i)
			}
		}
	}
	if code := strings.ToUpper(al.ATC); code != "" {
		for i, c := range a.classes {
			for _, p := range c.codes {
				if strings.HasPrefix(code, p) || strings.HasPrefix(p, code) {
					add(i)
				}
			}
		}
		return out
	}
	name := normalName(al.Substance)
	add(a.byName[name]...)
	if len(out) == 0 {
		for _, w := range strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' }) {
			add(a.byName[w]...)
		}
	}
	return out
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// classLevel is the length of an ATC pharmacological subgroup (level 4:
// J01C, beta-lactam antibacterials, penicillins): drugs that share it are
// "the same class" for an allergy recorded by code.
const classLevel = 4

// CheckAllergies warns when drug falls in the class of a recorded allergy,
// or in a class that cross-reacts with it:
//   - an allergy with a code covers the drugs of the same ATC level-4
//     group, or under the code itself when that is coarser (J01);
//   - an allergy in free text covers the drugs of the dictionary classes
//     its substance names ("penicillin" covers amoxicillin, J01CA04), and
//     always the drug of the very same name;
//   - the very substance, or a severe allergy, is contraindicated; any
//     other class match is major (both block); a cross-reacting class is
//     the dictionary's moderate or minor warning (it does not block).
func (t *Table) CheckAllergies(drug Drug, allergies []Allergy) []Warning {
	var out []Warning
	code := strings.ToUpper(drug.ATC)
	for _, al := range allergies {
		allergen := strings.ToUpper(al.ATC)
		classes := t.allergens.classesOf(al)
		var covers []string
		if allergen != "" {
			covers = []string{allergen[:min(len(allergen), classLevel)]}
		} else {
			for _, i := range classes {
				covers = append(covers, t.allergens.classes[i].codes...)
			}
		}
		same := (allergen != "" && code == allergen) ||
			(allergen == "" && normalName(al.Substance) != "" && normalName(al.Substance) == normalName(drug.Name))
		if same || (code != "" && matches(code, covers)) {
			severity := "major"
			if same || al.Severity == "severe" {
				severity = "contraindicated"
			}
			effect := "the patient has a recorded " + al.Severity + " allergy to " + al.Substance
			if !same {
				effect += ", a drug of the same class"
			}
			out = append(out, Warning{Kind: "allergy", Rule: "allergy-class", Severity: severity, Drug: drug,
				Other: Drug{ATC: allergen, Name: al.Substance}, Effect: effect,
				Advice: "choose a drug of another class, or record why the benefit outweighs the risk", Source: "the patient's recorded allergies"})
			continue
		}
		if t.allergens == nil || code == "" {
			continue
		}
		for _, r := range t.allergens.cross {
			if containsInt(classes, r.allergy) && matches(code, r.drugs) {
				out = append(out, Warning{Kind: "allergy", Rule: "allergy-cross-reactivity", Severity: r.severity, Drug: drug,
					Other: Drug{ATC: allergen, Name: al.Substance}, ClassA: t.allergens.classes[r.allergy].name,
					Effect: "the patient has a recorded " + al.Severity + " allergy to " + al.Substance + "; " + r.effect,
					Advice: "prescribe with caution; watch for a reaction after the first dose", Source: r.source})
				break
			}
		}
	}
	return out
}
