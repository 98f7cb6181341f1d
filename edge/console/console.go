// Package console is the operators' and admins' web console, served by
// every node under /console/: the cluster dashboard, accounts, clinics and
// doctors, service clients, the privacy review queues, audit reports and
// analytics. The server renders each page's frame in the reader's
// language (the login pages' catalogue, edge/locale); the page's script
// signs in through the embedded OpenID Provider as a public client with
// PKCE and fills the page from the API, whose routes decide who may see
// what (admins) exactly as they do for any other client: the console holds
// no privilege of its own, and its pages carry no data.
//
// Nothing is built: the script and the style sheet are plain files,
// embedded with the binary.
package console

import (
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/caregrid/caregrid/messages"

	"github.com/caregrid/caregrid/edge/locale"
	"golang.org/x/text/language"
)

// PathPrefix is where the console is mounted on the edge.
const PathPrefix = "/console"

// ClientID is the console's OpenID client: public, PKCE, created at start
// with this node's redirect URI (persistence.EnsurePublicClient).
const ClientID = "caregrid-console"

// CallbackPath and SignedOutPath are the console's redirect URIs, under
// the public base URL.
const (
	CallbackPath  = PathPrefix + "/callback"
	SignedOutPath = PathPrefix + "/"
)

//go:embed pages/*.html
var pageFiles embed.FS

//go:embed assets
var assetFiles embed.FS

// Config configures the console.
type Config struct {
	// Issuer is the embedded provider's issuer URL (its discovery document
	// is at Issuer/.well-known/openid-configuration).
	Issuer string
	// DefaultLocale is the pages' language when neither ?lang= nor the
	// browser names a supported one.
	DefaultLocale language.Tag
	Logger        *slog.Logger
}

// page is one console page: its path under PathPrefix, its template and
// its title.
type page struct {
	Path, Template, Title string
}

// pages are the console's pages, in the order the navigation lists them.
// (The catalogue's test finds the titles by their field name, Title.)
var pages = []page{
	{Path: "/cluster", Template: "cluster", Title: "Cluster"},
	{Path: "/accounts", Template: "accounts", Title: "Accounts"},
	{Path: "/directory", Template: "directory", Title: "Clinics and doctors"},
	{Path: "/clients", Template: "clients", Title: "Service clients"},
	{Path: "/reviews", Template: "reviews", Title: "Privacy reviews"},
	{Path: "/audit", Template: "audit", Title: "Audit trail"},
	{Path: "/analytics", Template: "analytics", Title: "Analytics"},
}

// callbackPage finishes a sign-in.
var callbackPage = page{Path: "/callback", Template: "callback", Title: "Signing in"}

// auditActions are the names audit events record actions under, sorted.
var auditActions = func() []string {
	var out []string
	for v := range messages.AuditAction_name {
		if n := messages.AuditAction(v).Name(); n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}()

var templates = template.Must(template.New("").ParseFS(pageFiles, "pages/*.html"))

// view is what a page's template reads.
type view struct {
	Lang, Title, Path, Issuer string
	T                         func(string, ...any) string
	Nav                       []navItem
	Languages                 []languageLink
	// Actions are the audit actions' names (the audit filter's choices).
	Actions []string
	// Texts are the script's texts in the page's language (html/template
	// writes them into the page as JSON).
	Texts map[string]string
}

type navItem struct {
	Href, Title string
	Current     bool
}

type languageLink struct {
	Code, Name, Href string
}

var languageNames = map[string]string{"en": "English", "ro": "Română", "ru": "Русский"}

// Handler serves the console.
func Handler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	assets, _ := fs.Sub(assetFiles, "assets")
	static := http.StripPrefix(PathPrefix+"/assets/", http.FileServerFS(assets))
	mux.Handle("GET "+PathPrefix+"/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets change with the binary only; a short cache, revalidated.
		w.Header().Set("Cache-Control", "public, max-age=300")
		static.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET "+PathPrefix+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, PathPrefix+"/cluster"+langQuery(r), http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+PathPrefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, PathPrefix+"/cluster"+langQuery(r), http.StatusSeeOther)
	})
	for _, p := range append(pages, callbackPage) {
		mux.HandleFunc("GET "+PathPrefix+p.Path, func(w http.ResponseWriter, r *http.Request) {
			render(w, r, cfg, p)
		})
	}
	mux.HandleFunc(PathPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
	return mux
}

// langQuery keeps a chosen language across a redirect.
func langQuery(r *http.Request) string {
	if l, ok := locale.Parse(r.URL.Query().Get("lang")); ok {
		return "?lang=" + l.String()
	}
	return ""
}

// csp lets the page run only its own script and style, talk only to its
// own origin (the API and the provider), and be framed by no one.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func render(w http.ResponseWriter, r *http.Request, cfg Config, p page) {
	tx := locale.For(r.URL.Query().Get("lang"), r.Header.Get("Accept-Language"), cfg.DefaultLocale)
	lang := tx.Tag.String()
	v := view{Lang: lang, Title: tx.T(p.Title), Path: PathPrefix + p.Path, Issuer: cfg.Issuer, T: tx.T, Texts: scriptTexts(tx), Actions: auditActions}
	for _, n := range pages {
		v.Nav = append(v.Nav, navItem{Href: PathPrefix + n.Path + "?lang=" + lang, Title: tx.T(n.Title), Current: n.Path == p.Path})
	}
	for _, t := range locale.Supported {
		code := t.String()
		q := r.URL.Query()
		q.Set("lang", code)
		v.Languages = append(v.Languages, languageLink{Code: code, Name: languageNames[code], Href: PathPrefix + p.Path + "?" + q.Encode()})
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", lang)
	h.Set("Content-Security-Policy", csp)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Add("Vary", "Accept-Language")
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, p.Template, v); err != nil {
		cfg.Logger.Error("console page", "page", p.Template, "error", err)
		http.Error(w, "console page failed", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte(b.String()))
}
