// Package locale holds every text caregrid shows a person (login pages,
// emails, API problem titles) in Romanian, Russian and English, and picks
// the language of each request: the OpenID request's ui_locales, then the
// browser's Accept-Language, then the node's default (--default-locale).
//
// The catalogue is keyed by the English text itself (gettext's way): code
// and templates read as they did, English needs no translation, and a text
// with no translation yet shows in English rather than as a key. The
// completeness test keeps messages/en.json equal to the texts the code uses
// and ro.json and ru.json equal to en.json, so a new text cannot ship in one
// language only. Plurals follow CLDR's rules through go-i18n.
package locale

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

//go:embed messages/*.json
var files embed.FS

// Supported are the languages of the catalogue, the default first.
var Supported = []language.Tag{language.English, language.Romanian, language.Russian}

var bundle = func() *i18n.Bundle {
	b := i18n.NewBundle(language.English)
	b.RegisterUnmarshalFunc("json", json.Unmarshal)
	for _, t := range Supported {
		if _, err := b.LoadMessageFileFS(files, "messages/"+t.String()+".json"); err != nil {
			panic(fmt.Sprintf("locale: messages/%s.json: %v", t, err))
		}
	}
	return b
}()

// Parse names a supported language ("ro", "ru-RU", "en"), or false.
func Parse(s string) (language.Tag, bool) {
	t, err := language.Parse(s)
	if err != nil {
		return language.Und, false
	}
	base, _ := t.Base()
	for _, sup := range Supported {
		if b, _ := sup.Base(); b == base {
			return sup, true
		}
	}
	return language.Und, false
}

// Texts is one request's language.
type Texts struct {
	Tag language.Tag
	loc *i18n.Localizer
}

// For picks the language: the first supported one of uiLocales (space
// separated, OpenID's ui_locales), then of acceptLanguage (the header),
// then def.
func For(uiLocales, acceptLanguage string, def language.Tag) Texts {
	tag := def
	if t, ok := first(strings.Fields(uiLocales)); ok {
		tag = t
	} else if tags, _, err := language.ParseAcceptLanguage(acceptLanguage); err == nil {
		for _, t := range tags {
			if sup, ok := Parse(t.String()); ok {
				tag = sup
				break
			}
		}
	}
	return Texts{Tag: tag, loc: i18n.NewLocalizer(bundle, tag.String())}
}

func first(names []string) (language.Tag, bool) {
	for _, n := range names {
		if t, ok := Parse(n); ok {
			return t, true
		}
	}
	return language.Und, false
}

// T is text in this language; args fill its {{.Name}} fields (name, value
// pairs). A text missing from the catalogue is returned as it is.
func (x Texts) T(text string, args ...any) string {
	return x.localize(text, nil, args)
}

// N is a text with a count, in the plural form the language needs for it
// ({{.Count}} in the text).
func (x Texts) N(text string, count int, args ...any) string {
	return x.localize(text, count, append(args, "Count", count))
}

func (x Texts) localize(text string, count any, args []any) string {
	data := map[string]any{}
	for i := 0; i+1 < len(args); i += 2 {
		data[fmt.Sprint(args[i])] = args[i+1]
	}
	if x.loc == nil {
		x.loc = i18n.NewLocalizer(bundle, language.English.String())
	}
	s, err := x.loc.Localize(&i18n.LocalizeConfig{MessageID: text, TemplateData: data, PluralCount: count,
		DefaultMessage: &i18n.Message{ID: text, Other: text, One: text}})
	if err != nil {
		return text
	}
	return s
}

// Detail translates a text that may have been formatted (fmt.Sprintf) from
// a catalogued format, such as "limit must be a whole number from 1 to
// %d": the text is matched against the formats, and the translated format
// is filled with the same values. A text that matches nothing stays as it
// is (English).
func (x Texts) Detail(s string) string {
	if s == "" || x.Tag == language.English {
		return s
	}
	if _, ok := exact[s]; ok {
		return x.T(s)
	}
	for _, f := range formats {
		m := f.re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		args := make([]any, len(m)-1)
		for i, v := range m[1:] {
			args[i] = v
		}
		return fmt.Sprintf(f.asStrings(x.T(f.text)), args...)
	}
	return s
}

// format is a catalogued text with fmt verbs, as a pattern that finds the
// values a formatted text was made with.
type format struct {
	text string
	re   *regexp.Regexp
}

var verb = regexp.MustCompile(`%[dsqv]`)

// asStrings makes a format take the values as the strings they were found
// as (%q values keep their quotes, found with them).
func (f format) asStrings(s string) string { return verb.ReplaceAllString(s, "%s") }

var exact, formats = func() (map[string]bool, []format) {
	raw, err := files.ReadFile("messages/en.json")
	if err != nil {
		panic(err)
	}
	var en map[string]any
	if err := json.Unmarshal(raw, &en); err != nil {
		panic(err)
	}
	ex := map[string]bool{}
	var fs []format
	for text := range en {
		if !verb.MatchString(text) {
			ex[text] = true
			continue
		}
		parts := verb.Split(text, -1)
		verbs := verb.FindAllString(text, -1)
		pattern := "^"
		for i, p := range parts {
			pattern += regexp.QuoteMeta(p)
			if i < len(verbs) {
				if verbs[i] == "%d" {
					pattern += `(-?[0-9]+)`
				} else {
					pattern += `(.+?)`
				}
			}
		}
		fs = append(fs, format{text: text, re: regexp.MustCompile(pattern + "$")})
	}
	// Longer formats first: the most specific match wins.
	slices.SortFunc(fs, func(a, b format) int { return len(b.text) - len(a.text) })
	return ex, fs
}()
