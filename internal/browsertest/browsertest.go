// Package browsertest drives Debian's Chromium from Go tests (through the
// DevTools protocol, with chromedp), so that pages are tested the way
// people use them: a form posted by an HTTP client missed a CSP rule that
// blocked every real sign-in. Each step's page is captured; when the test
// fails, the captures (screenshots and HTML) are written to a directory the
// test log names.
package browsertest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds one step: a page load, a form submission and the
// navigations it starts (generous: Chromium under -race tests on two cores).
const stepTimeout = 30 * time.Second

// Chromium is the browser binary: $CAREGRID_CHROMIUM, or Debian's.
func Chromium() string {
	if p := os.Getenv("CAREGRID_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	t      testing.TB
	n      int // the test's first, second, ... browser
	ctx    context.Context
	cancel context.CancelFunc

	// downloads is where the page's downloads go (Downloads); taken are
	// those Downloaded has returned.
	downloads string
	taken     map[string]bool

	mu       sync.Mutex
	console  []string // console messages and browser log entries
	captures []capture
}

// started counts each test's browsers, so each writes its own captures.
var started = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

type capture struct {
	name string
	png  []byte
	html string
}

// New starts Chromium (fatal when it is not installed: `apt-get install
// chromium`, as .ci/run does) with a fresh profile, and stops it when the
// test ends.
func New(t testing.TB) *Browser {
	t.Helper()
	if _, err := exec.LookPath(Chromium()); err != nil {
		t.Fatalf("browser tests need Chromium at %s (apt-get install chromium, or set CAREGRID_CHROMIUM): %v", Chromium(), err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium()),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // these machines run everything as root
		chromedp.DisableGPU,
		// A closed network: no component updates, sync or other traffic
		// that only fails here.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1000, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	started.Lock()
	started.n[t.Name()]++
	n := started.n[t.Name()]
	started.Unlock()
	b := &Browser{t: t, n: n, ctx: ctx, cancel: func() { cancelCtx(); cancelAlloc() }}
	// The first action starts the browser; the console is read from then on.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.cancel()
		t.Fatalf("start Chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the browser has gone
			}
			b.note(string(m.Type) + ": " + m.String())
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			b.writeCaptures()
		}
		b.cancel()
	})
	return b
}

func (b *Browser) note(s string) {
	b.mu.Lock()
	b.console = append(b.console, s)
	b.mu.Unlock()
}

// Console is what the pages and the browser logged so far (CSP violations
// among them).
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// NoCSPViolations fails the test if the browser reported one.
func (b *Browser) NoCSPViolations() {
	b.t.Helper()
	for _, line := range b.Console() {
		if strings.Contains(line, "Content Security Policy") {
			b.t.Errorf("the browser reported a CSP violation: %s", line)
		}
	}
}

func (b *Browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.Capture("failed: " + what)
		b.t.Fatalf("%s: %v (at %s; console: %s)", what, err, b.Location(), strings.Join(b.Console(), " | "))
	}
}

// Go opens url and waits for it to load.
func (b *Browser) Go(url string) {
	b.t.Helper()
	b.run("open "+url, chromedp.Navigate(url))
	b.Capture("open " + url)
}

// Location is the tab's current URL.
func (b *Browser) Location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

// Has reports whether the page shows an element matching sel now.
func (b *Browser) Has(sel string) bool {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	return n > 0
}

// Rendered reports whether the first image matching sel has loaded (a
// blocked or broken image has no natural width).
func (b *Browser) Rendered(sel string) bool {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	w, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`(document.querySelector(%q) || {}).naturalWidth || 0`, sel)))
	return err == nil && w > 0
}

// Text is the text of the first element matching sel (waiting for it).
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.Capture("failed: read " + sel)
		b.t.Fatalf("read %s: %v (at %s)", sel, err, b.Location())
	}
	return strings.TrimSpace(s)
}

// Fill types values into the page's fields, by name.
func (b *Browser) Fill(fields map[string]string) {
	b.t.Helper()
	for name, v := range fields {
		sel := chromedp.CSS(fmt.Sprintf(`[name=%q]`, name))
		// Clear misses a value the page's script set; the field's value
		// is emptied first, as a person selecting it all would.
		empty := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).value = ""`, fmt.Sprintf(`[name=%q]`, name)))
		b.run("fill "+name, chromedp.WaitVisible(sel), empty, chromedp.SendKeys(sel, v))
	}
}

// Check ticks a checkbox by name.
func (b *Browser) Check(name string) {
	b.t.Helper()
	b.run("tick "+name, chromedp.Click(chromedp.CSS(fmt.Sprintf(`[name=%q]`, name))))
}

// Click clicks sel and waits until the page it leads to has loaded (a new
// document, after any redirects and meta refreshes that are quick to
// follow: until the location stops changing).
func (b *Browser) Click(sel string) {
	b.t.Helper()
	b.run("mark the page", chromedp.Evaluate[chromedp.Void](`window.__caregridOld = true`))
	b.run("click "+sel, chromedp.Click(chromedp.CSS(sel)))
	b.settle("after clicking " + sel)
}

// Submit fills the fields and presses the form's submit button.
func (b *Browser) Submit(fields map[string]string) {
	b.t.Helper()
	b.Fill(fields)
	b.Click(`form [type=submit], form button:not([type=button])`)
}

// settle waits for a new document that is fully loaded and whose location
// held still for a moment (a meta refresh moves on within it).
func (b *Browser) settle(what string) {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	last, still := "", 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		fresh, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__caregridOld === undefined && document.readyState === "complete"`))
		cancel()
		loc := b.Location()
		if err == nil && fresh && loc == last {
			if still++; still >= 3 {
				b.Capture(what)
				return
			}
		} else {
			still = 0
		}
		last = loc
		time.Sleep(100 * time.Millisecond) // polling the browser: no event says "done navigating"
	}
	b.Capture("timed out: " + what)
	b.t.Fatalf("%s: no new page settled within %v (at %s; console: %s)", what, stepTimeout, b.Location(), strings.Join(b.Console(), " | "))
}

// Capture keeps a screenshot and the HTML of the current page, written out
// if the test fails.
func (b *Browser) Capture(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, _ := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	b.mu.Lock()
	b.captures = append(b.captures, capture{name: name, png: png, html: html})
	b.mu.Unlock()
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (b *Browser) writeCaptures() {
	dir := filepath.Join(screenshotDir(), unsafeName.ReplaceAllString(b.t.Name(), "_"), fmt.Sprintf("browser-%d", b.n))
	_ = os.RemoveAll(dir) // an earlier run's
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("screenshots: %v", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, c := range b.captures {
		base := filepath.Join(dir, fmt.Sprintf("%02d-%s", i+1, unsafeName.ReplaceAllString(c.name, "_")))
		if len(base) > 200 {
			base = base[:200]
		}
		_ = os.WriteFile(base+".png", c.png, 0o644)
		_ = os.WriteFile(base+".html", []byte(c.html), 0o644)
	}
	_ = os.WriteFile(filepath.Join(dir, "console.txt"), []byte(strings.Join(b.console, "\n")), 0o644)
	b.t.Logf("the browser's pages, step by step: %s", dir)
}

// WaitFor waits until the page has an element matching sel (the page's
// script fills it in), and fails the test after stepTimeout.
func (b *Browser) WaitFor(sel string) {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for !b.Has(sel) {
		if time.Now().After(deadline) {
			b.Capture("timed out: wait for " + sel)
			b.t.Fatalf("no %s within %v (at %s; console: %s)", sel, stepTimeout, b.Location(), strings.Join(b.Console(), " | "))
		}
		time.Sleep(100 * time.Millisecond) // polling the page: its script fills it in its own time
	}
}

// Press clicks sel where the page's script handles the click (no new
// document follows).
func (b *Browser) Press(sel string) {
	b.t.Helper()
	b.run("press "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// Eval evaluates a JavaScript expression in the page (a promise is
// awaited) and returns its value.
func Eval[T any](b *Browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.Capture("failed: eval")
		b.t.Fatalf("evaluate %.80s: %v (at %s)", js, err, b.Location())
	}
	return v
}

// Keep writes a screenshot of the page now as a test artefact, into
// $CAREGRID_SCREENSHOTS (default: caregrid-screenshots in the temporary
// directory), under the test's name.
func (b *Browser) Keep(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := filepath.Join(screenshotDir(), unsafeName.ReplaceAllString(b.t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("screenshots: %v", err)
		return
	}
	path := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

func screenshotDir() string {
	if dir := os.Getenv("CAREGRID_SCREENSHOTS"); dir != "" {
		return dir
	}
	return filepath.Join(os.TempDir(), "caregrid-screenshots")
}

// axeSource is axe-core (Deque's accessibility engine, MPL-2.0), from the
// npm registry at the version axe/package-lock.json pins.
//
//go:embed axe/axe.min.js
var axeSource string

// Violation is one accessibility rule a page breaks, with where.
type Violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// Accessible runs axe-core on the page as it is now (WCAG 2.x A and AA
// rules and axe's best practices) and fails the test on every serious or
// critical violation.
func (b *Browser) Accessible(what string) {
	b.t.Helper()
	if !Eval[bool](b, `typeof window.axe === "object"`) {
		Eval[bool](b, axeSource+";true")
	}
	raw := Eval[string](b, `axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))))`)
	var vs []Violation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		b.t.Fatalf("axe on %s: %v", what, err)
	}
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			b.Capture("inaccessible: " + what)
			b.t.Errorf("%s: %s (%s): %s at %v", what, v.ID, v.Impact, v.Help, v.Nodes)
		}
	}
}

// Downloads lets the page download files into a fresh directory, which
// Downloaded then reads.
func (b *Browser) Downloads() {
	b.t.Helper()
	b.downloads = b.t.TempDir()
	b.run("allow downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: b.downloads,
		})
		return err
	}))
}

// Downloaded waits for the next finished download (since Downloads, in
// order) and returns its contents.
func (b *Browser) Downloaded() []byte {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(b.downloads)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".crdownload") || b.taken[e.Name()] {
				continue
			}
			path := filepath.Join(b.downloads, e.Name())
			before, _ := os.Stat(path)
			time.Sleep(200 * time.Millisecond) // written whole: its size holds still
			after, err := os.Stat(path)
			if err != nil || before == nil || after.Size() != before.Size() {
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				b.t.Fatal(err)
			}
			if b.taken == nil {
				b.taken = map[string]bool{}
			}
			b.taken[e.Name()] = true
			return data
		}
		time.Sleep(100 * time.Millisecond) // polling the directory: the browser writes in its own time
	}
	b.t.Fatalf("no download finished within %v (console: %s)", stepTimeout, strings.Join(b.Console(), " | "))
	return nil
}
