package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/caregrid/caregrid/edge/locale"
	"golang.org/x/text/language"
)

// TestPagesAreFramesWithoutData: every page renders in each language with
// the strict CSP, runs no inline script (only the module file, and the
// texts as a JSON data block), and names no one; assets are served; other
// paths are not found.
func TestPagesAreFramesWithoutData(t *testing.T) {
	h := Handler(Config{Issuer: "https://caregrid.example/oidc"})
	get := func(path, acceptLanguage string) *http.Response {
		r := httptest.NewRequest("GET", path, nil)
		if acceptLanguage != "" {
			r.Header.Set("Accept-Language", acceptLanguage)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	scripts := regexp.MustCompile(`<script[^>]*>`)
	for _, p := range append(pages, callbackPage) {
		for _, lang := range []string{"en", "ro", "ru"} {
			res := get(PathPrefix+p.Path, lang)
			body, _ := io.ReadAll(res.Body)
			html := string(body)
			if res.StatusCode != 200 || res.Header.Get("Content-Security-Policy") != csp || res.Header.Get("Content-Language") != lang {
				t.Fatalf("%s in %s: %d, headers %v", p.Path, lang, res.StatusCode, res.Header)
			}
			tag, _ := locale.Parse(lang)
			want := locale.For(lang, "", language.English).T(p.Title)
			if !strings.Contains(html, "<h1>"+want+"</h1>") || tag == language.Und {
				t.Errorf("%s in %s: no heading %q", p.Path, lang, want)
			}
			if lang == "ru" && want == p.Title { // Russian differs from English in every word
				t.Errorf("the title %q has no Russian", p.Title)
			}
			for _, s := range scripts.FindAllString(html, -1) {
				if s != `<script type="module" src="/console/assets/app.js">` && s != `<script type="application/json" id="texts">` {
					t.Errorf("%s: a script the CSP would block: %s", p.Path, s)
				}
			}
		}
	}
	if res := get(PathPrefix+"/assets/app.js", ""); res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("app.js: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res := get(PathPrefix+"/assets/console.css", ""); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("console.css: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res := get(PathPrefix+"/", ""); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != PathPrefix+"/cluster" {
		t.Fatalf("/console/: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	for _, p := range []string{PathPrefix + "/nope", PathPrefix + "/assets/nope.js", PathPrefix + "/cluster/x"} {
		if res := get(p, ""); res.StatusCode != 404 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
	}
}

// TestEveryScriptTextIsGiven: each t('key') the script asks for is a key
// of scriptTexts (else the page would show the key).
func TestEveryScriptTextIsGiven(t *testing.T) {
	js, err := assetFiles.ReadFile("assets/app.js")
	if err != nil {
		t.Fatal(err)
	}
	texts := scriptTexts(locale.For("en", "", language.English))
	for _, m := range regexp.MustCompile(`\bt\('([A-Za-z-]+)'\)`).FindAllStringSubmatch(string(js), -1) {
		if _, ok := texts[m[1]]; !ok {
			t.Errorf("app.js asks for %q, which scriptTexts lacks", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`'(stat[A-Z][A-Za-z]+)'`).FindAllStringSubmatch(string(js), -1) {
		if _, ok := texts[m[1]]; !ok {
			t.Errorf("app.js labels a figure %q, which scriptTexts lacks", m[1])
		}
	}
}
