package interactions

import (
	"encoding/csv"
	"os"
	"strings"
	"testing"
)

// For every row of the table, a pair of its members warns, either way round
// and with any member on each side; an unrelated pair does not.
func TestEveryRowWarnsForItsPairs(t *testing.T) {
	table := HighPriority()
	f, err := os.Open("ddi-high-priority.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if table.Rules() != len(rows)-1 || table.Rules() != 15 {
		t.Fatalf("rules = %d, rows = %d", table.Rules(), len(rows)-1)
	}
	for _, row := range rows[1:] {
		id, as, bs := row[0], strings.Split(row[2], "|"), strings.Split(row[4], "|")
		if row[2] == "" || row[4] == "" {
			// Row 8 (QT-prolonging agents): no ATC group exists, so no code can meet it.
			if w := table.Check(Drug{ATC: "C01BD01"}, []Drug{{ATC: "J01FA09"}}); hasRule(w, id) {
				t.Errorf("row %s without codes matched", id)
			}
			continue
		}
		// The first and the last member of each side, in both orders; a group
		// code (N06AA) stands for a substance under it.
		for _, a := range []string{as[0], as[len(as)-1]} {
			for _, b := range []string{bs[0], bs[len(bs)-1]} {
				a5, b5 := substance(a), substance(b)
				if w := table.Check(Drug{ATC: a5, Name: "a"}, []Drug{{ATC: b5, Name: "b"}}); !hasRule(w, id) {
					t.Errorf("row %s: %s with %s does not warn", id, a5, b5)
				}
				w := table.Check(Drug{ATC: b5}, []Drug{{ATC: a5}})
				if !hasRule(w, id) {
					t.Errorf("row %s: %s with %s (reversed) does not warn", id, b5, a5)
				} else if w[0].Severity != "contraindicated" || w[0].Effect == "" || w[0].Advice == "" {
					t.Errorf("row %s: warning %+v", id, w[0])
				}
			}
		}
	}
	// Paracetamol with amoxicillin, and a drug with itself class-wise unrelated.
	if w := table.Check(Drug{ATC: "N02BE01"}, []Drug{{ATC: "J01CA04"}, {ATC: "C09AA05"}}); len(w) != 0 {
		t.Errorf("unrelated drugs warn: %+v", w)
	}
	// The row lists members, not whole groups: another SSRI-class sibling
	// outside the list does not match row 4's MAO side.
	if w := table.Check(Drug{ATC: "N06AB03"}, []Drug{{ATC: "N06AF02"}}); hasRule(w, "4") {
		t.Error("row 4 matched an MAO inhibitor its list does not name")
	}
}

// substance makes a group code (level 4, N06AA) into a substance under it.
func substance(code string) string {
	if len(code) == 5 {
		return code + "09"
	}
	return code
}

func hasRule(ws []Warning, id string) bool {
	for _, w := range ws {
		if w.Rule == id {
			return true
		}
	}
	return false
}

func TestLoadRefusesMalformedTables(t *testing.T) {
	for name, csv := range map[string]string{
		"wrong header": "id,a,b\n1,x,y\n",
		"bad code":     "id,drug_a,atc_a,drug_b,atc_b,severity,effect,management,source\n1,A,N06-AB,B,J01CA04,contraindicated,e,m,s\n",
		"bad id":       "id,drug_a,atc_a,drug_b,atc_b,severity,effect,management,source\nx,A,N06AB03,B,J01CA04,contraindicated,e,m,s\n",
	} {
		if _, err := Load(strings.NewReader(csv)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestAllergiesWarnForTheirClass(t *testing.T) {
	checker := HighPriority()
	amoxicillin := Drug{ATC: "J01CA04", Name: "Amoxicillin"}
	cases := []struct {
		name     string
		allergy  Allergy
		severity string // "" for no warning
	}{
		{"the same substance", Allergy{Substance: "amoxicillin", ATC: "J01CA04", Severity: "mild"}, "contraindicated"},
		{"another penicillin, a mild allergy", Allergy{Substance: "benzylpenicillin", ATC: "J01CE01", Severity: "mild"}, "major"},
		{"another penicillin, a severe allergy", Allergy{Substance: "benzylpenicillin", ATC: "J01CE01", Severity: "severe"}, "contraindicated"},
		{"the class itself", Allergy{Substance: "penicillins", ATC: "J01C", Severity: "moderate"}, "major"},
		{"a coarser class", Allergy{Substance: "antibacterials", ATC: "j01", Severity: "moderate"}, "major"},
		{"a cephalosporin: cross-reactivity only", Allergy{Substance: "cefalexin", ATC: "J01DB01", Severity: "severe"}, "moderate"},
		{"an unrelated drug", Allergy{Substance: "ibuprofen", ATC: "M01AE01", Severity: "severe"}, ""},
		{"no code, the same name", Allergy{Substance: " AMOXICILLIN", Severity: "moderate"}, "contraindicated"},
		{"no code, another name", Allergy{Substance: "pollen", Severity: "severe"}, ""},
		// Free text is matched to its class through the dictionary.
		{"free text: the README's penicillin", Allergy{Substance: "penicillin", Severity: "severe"}, "contraindicated"},
		{"free text in Romanian", Allergy{Substance: "Penicilină", Severity: "mild"}, "major"},
		{"free text in Russian, with a note", Allergy{Substance: "пенициллин (сыпь)", Severity: "moderate"}, "major"},
		{"free text naming another drug of the class", Allergy{Substance: "Ampicillin", Severity: "moderate"}, "major"},
		{"free text naming a cephalosporin", Allergy{Substance: "ceftriaxone", Severity: "moderate"}, "moderate"},
		{"free text naming an NSAID", Allergy{Substance: "aspirin", Severity: "severe"}, ""},
	}
	for _, c := range cases {
		w := checker.CheckAllergies(amoxicillin, []Allergy{c.allergy})
		switch {
		case c.severity == "" && len(w) != 0:
			t.Errorf("%s: warned %+v", c.name, w)
		case c.severity != "" && (len(w) != 1 || w[0].Severity != c.severity || w[0].Kind != "allergy" ||
			Blocking[w[0].Severity] != (c.severity != "moderate" && c.severity != "minor") ||
			w[0].Other.Name != c.allergy.Substance || !strings.Contains(w[0].Effect, c.allergy.Substance)):
			t.Errorf("%s: warnings %+v, want one %s", c.name, w, c.severity)
		}
	}
	// Other classes of the dictionary.
	for _, c := range []struct {
		drug     Drug
		allergy  string
		severity string
	}{
		{Drug{ATC: "M01AE01", Name: "Ibuprofen"}, "aspirină", "major"},
		{Drug{ATC: "N02AX02", Name: "Tramadol"}, "morphine", "major"},
		{Drug{ATC: "J01EE01", Name: "Sulfamethoxazole and trimethoprim"}, "sulfa drugs", "major"},
		{Drug{ATC: "C03CA01", Name: "Furosemide"}, "sulfa", "minor"},
		// The very substance in another language is a class match (major), not a name match.
		{Drug{ATC: "N01BB02", Name: "Lidocaine"}, "лидокаин", "major"},
	} {
		w := checker.CheckAllergies(c.drug, []Allergy{{Substance: c.allergy, Severity: "mild"}})
		if len(w) != 1 || w[0].Severity != c.severity {
			t.Errorf("%s with an allergy to %q: %+v, want one %s", c.drug.Name, c.allergy, w, c.severity)
		}
	}
}

func TestTheAllergenDictionaryLoadsAndRefusesBadRows(t *testing.T) {
	a := BundledAllergens()
	if got := a.ClassesOf(Allergy{Substance: "Penicillin"}); len(got) != 1 || got[0] != "penicillins" {
		t.Fatalf("penicillin is in %v", got)
	}
	if got := a.ClassesOf(Allergy{ATC: "J01CA04"}); len(got) != 1 || got[0] != "penicillins" {
		t.Fatalf("J01CA04 is in %v", got)
	}
	classes := "class,atc,names\npenicillins,J01C,penicillin\n"
	for name, tt := range map[string][2]string{
		"a bad header":              {"klass,atc,names\n", "allergy_class,drug_atc,severity,effect,source\n"},
		"a bad code":                {"class,atc,names\nx,J1,x\n", "allergy_class,drug_atc,severity,effect,source\n"},
		"an empty name":             {"class,atc,names\nx,J01,a||b\n", "allergy_class,drug_atc,severity,effect,source\n"},
		"an unknown class":          {classes, "allergy_class,drug_atc,severity,effect,source\nnope,J01D,minor,e,s\n"},
		"a blocking cross-reaction": {classes, "allergy_class,drug_atc,severity,effect,source\npenicillins,J01D,major,e,s\n"},
	} {
		if _, err := LoadAllergens(strings.NewReader(tt[0]), strings.NewReader(tt[1])); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
