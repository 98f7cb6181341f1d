package locale

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/language"
)

// The places where the edge hands a person an English text to translate:
// templates' {{call .T "..."}}, Go's tx.T / tx.N, and the login pages'
// Title, Message and Error fields (translated by render).
var uses = []*regexp.Regexp{
	regexp.MustCompile(`\{\{call \.T ("(?:[^"\\]|\\.)*")\}\}`),
	regexp.MustCompile(`\btx\.[TN]\(("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\b(?:Title|Message|Error): ("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\b(?:form\.Error|msg) = ("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\bretry\(("(?:[^"\\]|\\.)*")\)`),
	regexp.MustCompile(`\breturn ("(?:[^"\\]|\\.)*") // text`),
}

// apiTitles are the API's problem titles: problem(status, "name", "Title", ...)
// and the grain errors' {status, "name", "Title"}.
var apiTitles = []*regexp.Regexp{
	regexp.MustCompile(`\bproblem\([^,()]+, "[^"]+", ("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\{[0-9]{3}, "[^"]+", ("(?:[^"\\]|\\.)*")\}`),
	// The edge's own details and field messages (the grains' come next).
	regexp.MustCompile(`\bproblem\([^,()]+, "[^"]+", "[^"]*", ("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\b(?:malformed|forbidden|unauthenticated)\(("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\bFieldError\{[^{}"]*(?:"[^"]*"[^{}"]*)?("(?:[^"\\]|\\.)*")\}`),
	regexp.MustCompile(`(?:malformed\(|,\s+)fmt\.Sprintf\(("(?:[^"\\]|\\.)*")`),
	// Texts the edge writes for a person outside a problem (an export's index).
	regexp.MustCompile(`\btx\.[TN]\(("(?:[^"\\]|\\.)*")`),
}

// grainTexts are the details and field messages the grains write (they
// reach the API as problem details and field messages).
var grainTexts = []*regexp.Regexp{
	regexp.MustCompile(`messages\.Err[A-Za-z]+\(("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\bdeny\(("(?:[^"\\]|\\.)*")\)`),
	regexp.MustCompile(`\b(?:v|errs)\.Add\([^,]+, ("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\.Add\([^,]+, fmt\.Sprintf\(("(?:[^"\\]|\\.)*")`),
	// An error whose text reaches the API (marked "// text" where it is made).
	regexp.MustCompile(`(?:errors\.New|fmt\.Errorf|fmt\.Sprintf)\(("(?:[^"\\]|\\.)*")[^\n]*// text`),
	regexp.MustCompile(`\bwrongState\(("(?:[^"\\]|\\.)*")`),
	regexp.MustCompile(`\bErrQuery\(("(?:[^"\\]|\\.)*")`), // the search's refusals of a query
	// Field messages in a grain error's metadata ("field:name": "...").
	regexp.MustCompile(`"field:[a-z_]+"(?:\]\s*=|:)\s*("(?:[^"\\]|\\.)*")`),
}

// usedTexts scans the login pages' sources and templates (edge/identity)
// for the texts they show, and the edge's for the API's problem titles.
func usedTexts(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") || strings.HasPrefix(filepath.ToSlash(path), "../locale/") ||
			!(strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".html")) {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		patterns := append(slices.Clone(apiTitles), grainTexts...)
		if strings.HasPrefix(filepath.ToSlash(path), "../identity/") || strings.HasPrefix(filepath.ToSlash(path), "../console/") {
			patterns = append(slices.Clone(uses), grainTexts...)
		}
		for _, re := range patterns {
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				s, err := strconv.Unquote(m[1])
				if err != nil {
					t.Fatalf("%s: %s: %v", path, m[1], err)
				}
				if s != "" && s != "%s" && !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"../../actors", "../../search"} {
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") || !strings.HasSuffix(path, ".go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, re := range grainTexts {
				for _, m := range re.FindAllStringSubmatch(string(src), -1) {
					s, err := strconv.Unquote(m[1])
					if err != nil {
						t.Fatalf("%s: %s: %v", path, m[1], err)
					}
					// "%s" alone passes a text made elsewhere (a deny reason).
					if strings.ContainsFunc(s, unicode.IsLetter) && verb.ReplaceAllString(s, "") != "" && s != "%s" && !slices.Contains(out, s) {
						out = append(out, s)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

func catalogue(t *testing.T, tag language.Tag) map[string]any {
	t.Helper()
	b, err := files.ReadFile("messages/" + tag.String() + ".json")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", tag, err)
	}
	return m
}

// TestEveryTextInEveryLanguage: en.json lists exactly the texts the edge
// shows, and ro.json and ru.json translate every one of them (with the
// plural forms their languages need where the text has a count) and
// nothing else. UPDATE_CATALOGUE=1 writes the texts the code uses into
// en.json, for a new text's first step.
func TestEveryTextInEveryLanguage(t *testing.T) {
	used := usedTexts(t)
	if os.Getenv("UPDATE_CATALOGUE") != "" {
		old := catalogue(t, language.English)
		en := map[string]any{}
		for _, s := range used {
			if v, ok := old[s]; ok {
				en[s] = v // as edited (an English singular, say)
			} else if strings.Contains(s, "{{.Count}}") {
				en[s] = map[string]string{"one": s, "other": s}
			} else {
				en[s] = s
			}
		}
		b, _ := json.MarshalIndent(en, "", "  ")
		if err := os.WriteFile("messages/en.json", append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	en := catalogue(t, language.English)
	for _, s := range used {
		if _, ok := en[s]; !ok {
			t.Errorf("en.json lacks %q (UPDATE_CATALOGUE=1 adds the code's texts)", s)
		}
	}
	for s := range en {
		if !slices.Contains(used, s) {
			t.Errorf("en.json has %q, which no code shows", s)
		}
	}
	plurals := map[language.Tag][]string{language.Romanian: {"one", "few", "other"}, language.Russian: {"one", "few", "many", "other"}}
	for _, tag := range []language.Tag{language.Romanian, language.Russian} {
		tr := catalogue(t, tag)
		for s := range en {
			v, ok := tr[s]
			switch {
			case !ok:
				t.Errorf("%s.json lacks %q", tag, s)
			case strings.Contains(s, "{{.Count}}"):
				forms, _ := v.(map[string]any)
				for _, f := range plurals[tag] {
					if text, _ := forms[f].(string); !strings.Contains(text, "{{.Count}}") {
						t.Errorf("%s.json: %q needs its %q form, with {{.Count}}", tag, s, f)
					}
				}
			default:
				text, _ := v.(string)
				if text == "" || text == s && len(s) > 3 {
					t.Errorf("%s.json: %q is not translated", tag, s)
				}
				if strings.Join(verb.FindAllString(s, -1), "") != strings.Join(verb.FindAllString(text, -1), "") {
					t.Errorf("%s.json: %q must keep its values' verbs in order: %q", tag, s, text)
				}
				for _, field := range regexp.MustCompile(`\{\{\.[A-Za-z]+\}\}`).FindAllString(s, -1) {
					if !strings.Contains(text, field) {
						t.Errorf("%s.json: %q loses %s", tag, s, field)
					}
				}
			}
		}
		for s := range tr {
			if _, ok := en[s]; !ok {
				t.Errorf("%s.json has %q, which en.json does not", tag, s)
			}
		}
	}
}

func TestTheLanguageIsChosenByUILocalesThenAcceptLanguageThenTheDefault(t *testing.T) {
	for _, c := range []struct {
		ui, accept string
		def        language.Tag
		want       string
	}{
		{"ro", "ru-RU,ru;q=0.9", language.English, "ro"},
		{"de ru", "ro", language.English, "ru"},
		{"", "de-DE, ru-RU;q=0.8, en;q=0.5", language.English, "ru"},
		{"", "de", language.Romanian, "ro"},
		{"xx-invalid", "", language.English, "en"},
	} {
		if got := For(c.ui, c.accept, c.def).Tag.String(); got != c.want {
			t.Errorf("ui_locales %q, Accept-Language %q, default %s: %s, want %s", c.ui, c.accept, c.def, got, c.want)
		}
	}
	ro := For("ro", "", language.English)
	if got := ro.N("Too many sign-in attempts. Wait {{.Count}} seconds and try again.", 1); !strings.Contains(got, "1 secundă") {
		t.Errorf("Romanian, 1: %q", got)
	}
	ru := For("ru", "", language.English)
	for n, want := range map[int]string{1: "1 секунду", 3: "3 секунды", 5: "5 секунд", 21: "21 секунду"} {
		if got := ru.N("Too many sign-in attempts. Wait {{.Count}} seconds and try again.", n); !strings.Contains(got, want) {
			t.Errorf("Russian, %d: %q, want %q in it", n, got, want)
		}
	}
	if got := For("", "", language.English).T("Sign in"); got != "Sign in" {
		t.Errorf("English: %q", got)
	}
}

func TestDetailsFormattedFromACatalogueFormatAreTranslatedWithTheirValues(t *testing.T) {
	ro, ru := For("ro", "", language.English), For("ru", "", language.English)
	for _, c := range []struct {
		tx       Texts
		in, want string
	}{
		{ro, "the body is not valid JSON (at byte 17)", "corpul nu este JSON valid (la octetul 17)"},
		{ro, "the body is not valid JSON", "corpul nu este JSON valid"},
		{ru, "the request budget (50 per 1s) is spent; retry after 2 s", "лимит запросов (50 за 1s) исчерпан; повторите через 2 с"},
		{ru, `unexpected part "x"; send file and title`, `неожиданная часть "x"; отправьте file и title`},
		{ru, "a grain's detail the catalogue does not have", "a grain's detail the catalogue does not have"},
		{For("", "", language.English), "the body is not valid JSON (at byte 17)", "the body is not valid JSON (at byte 17)"},
	} {
		if got := c.tx.Detail(c.in); got != c.want {
			t.Errorf("%s %q: %q, want %q", c.tx.Tag, c.in, got, c.want)
		}
	}
}
