package notify

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path"
	"strings"
	"text/template"
)

//go:embed templates
var embedded embed.FS

// Templates renders messages: one file per language and event
// (templates/<lang>/<event>.tmpl) defining "subject" and "text" (the
// email) and "short" (what SMS and push say: never a diagnosis or a
// medication, since neither channel is private), plus
// templates/<lang>/common.tmpl and the HTML email layout
// templates/layout.html. An operator's directory with the same layout
// overrides any of these files.
type Templates struct {
	text   map[string]*template.Template // by language
	layout *htmltemplate.Template
}

// LoadTemplates reads the embedded templates, each replaced by the file
// of the same path in dir when dir has one ("" : none). Every event must
// render in every language.
func LoadTemplates(dir string) (*Templates, error) {
	read := func(name string) ([]byte, error) {
		if dir != "" {
			b, err := os.ReadFile(path.Join(dir, name))
			if err == nil {
				return b, nil
			}
			if !os.IsNotExist(err) {
				return nil, err
			}
		}
		return fs.ReadFile(embedded, "templates/"+name)
	}
	t := &Templates{text: map[string]*template.Template{}}
	b, err := read("layout.html")
	if err != nil {
		return nil, err
	}
	if t.layout, err = htmltemplate.New("layout.html").Parse(string(b)); err != nil {
		return nil, fmt.Errorf("notification templates: %w", err)
	}
	for _, lang := range Languages {
		root := template.New(lang).Option("missingkey=error")
		for _, name := range append([]string{"common"}, Events...) {
			b, err := read(lang + "/" + name + ".tmpl")
			if err != nil {
				return nil, fmt.Errorf("notification templates: %w", err)
			}
			// Each file's defines are prefixed with its event, so that
			// the files share one namespace without clashing.
			src := strings.ReplaceAll(string(b), `{{define "`, `{{define "`+name+`.`)
			if _, err := root.New(name).Parse(src); err != nil {
				return nil, fmt.Errorf("notification templates %s/%s: %w", lang, name, err)
			}
		}
		t.text[lang] = root
		for _, event := range Events {
			for _, part := range []string{"subject", "text", "short"} {
				if root.Lookup(event+"."+part) == nil {
					return nil, fmt.Errorf("notification templates %s/%s: no %q", lang, event, part)
				}
			}
		}
	}
	return t, nil
}

// Rendered is one event's message in one language.
type Rendered struct {
	Subject, Text, HTML, Short, Open string
}

// Render renders event in lang with v.
func (t *Templates) Render(lang, event string, v View) (Rendered, error) {
	root, ok := t.text[lang]
	if !ok {
		return Rendered{}, fmt.Errorf("no templates in %q", lang)
	}
	exec := func(name string) (string, error) {
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, name, v); err != nil {
			return "", err
		}
		return strings.TrimSpace(b.String()), nil
	}
	var r Rendered
	var err error
	for _, p := range []struct {
		dst  *string
		name string
	}{{&r.Subject, event + ".subject"}, {&r.Text, event + ".text"}, {&r.Short, event + ".short"}, {&r.Open, "common.open"}} {
		if *p.dst, err = exec(p.name); err != nil {
			return Rendered{}, err
		}
	}
	r.Subject = strings.Join(strings.Fields(r.Subject), " ")
	var b bytes.Buffer
	err = t.layout.Execute(&b, struct {
		Lang, Subject, Open, URL string
		Paragraphs               []string
	}{lang, r.Subject, r.Open, v.PortalURL, strings.Split(r.Text, "\n\n")})
	r.HTML = b.String()
	return r, err
}

// View is what a template may show: names and times, never clinical data.
type View struct {
	PatientName string
	DoctorName  string
	ClinicName  string
	// Start, PreviousStart and Expires are formatted in the clinic's time zone.
	Start, PreviousStart, Expires string
	By                            string // who cancelled: patient or clinic
	PortalURL                     string
}
