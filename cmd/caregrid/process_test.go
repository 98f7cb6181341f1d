package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/proof/prooftest"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
)

// childArgsEnv, when set, makes the test binary run caregrid itself with
// these arguments (separated by \x1f) instead of the tests: the tests
// start real caregrid processes without building another binary.
const childArgsEnv = "CAREGRID_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		if args == raceForTest {
			raceOnPurpose()
			os.Exit(0)
		}
		os.Args = append([]string{"caregrid"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	prooftest.Main(m)
}

// childCommand runs this test binary as caregrid with args.
func childCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

// The tests run this binary, built with -race under `make test`, as their
// caregrid nodes, so a data race inside a member shows in that member's
// output and nowhere else. These are how the runtime opens such reports:
// the race detector's, and the runtime's own for unsynchronised map access
// (which it catches even without -race).
var raceMarkers = []string{"WARNING: DATA RACE", "fatal error: concurrent map"}

// raceReports returns each report in a child's output, from its marker on
// (at most 4 KiB of each).
func raceReports(out string) []string {
	var reports []string
	for _, m := range raceMarkers {
		for rest := out; ; {
			i := strings.Index(rest, m)
			if i < 0 {
				break
			}
			rest = rest[i:]
			reports = append(reports, rest[:min(len(rest), 4096)])
			rest = rest[len(m):]
		}
	}
	return reports
}

// raceForTest makes the child run raceOnPurpose instead of caregrid, so
// that a test can show a race in a child is caught.
const raceForTest = "race-on-purpose"

// raceOnPurpose writes one variable from two goroutines without a lock.
func raceOnPurpose() {
	var shared int
	done := make(chan struct{})
	go func() { shared++; close(done) }()
	shared++
	<-done
	fmt.Println("raced:", shared)
}

// process is a caregrid node running as its own OS process.
type process struct {
	t       testing.TB
	args    []string
	cmd     *exec.Cmd
	base    string
	log     string
	checked int64 // how much of log has been searched for race reports

	done    chan struct{} // closed when the running process has ended
	waitErr error         // how it ended, once done is closed
}

// startProcess runs `caregrid serve` on a fresh migrated database and a
// free loopback port; extra flags are appended. The database pool is the
// test's view of the same database.
func startProcess(t *testing.T, extra ...string) (*process, *persistence.DB) {
	t.Helper()
	url, db := migratedDatabase(t)
	addr := freeAddr(t)
	dir := t.TempDir()
	p := newProcess(t, dir, append([]string{"serve",
		"--database-url", url, "--http-addr", addr, "--public-url", "http://" + addr, "--data-dir", dir,
		"--master-key-file", filepath.Join(dir, "master.key"), "--cluster-port", "0", "--log-level", "warn"}, extra...))
	p.start()
	return p, db
}

// migratedDatabase is a fresh database with the schema, and the test's pool on it.
func migratedDatabase(t *testing.T) (string, *persistence.DB) {
	t.Helper()
	url := pgtest.NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := persistence.Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return url, db
}

// freeAddr is a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newProcess prepares a caregrid process with args (http-addr among them),
// logging into dir; it is killed when the test ends.
func newProcess(t *testing.T, dir string, args []string) *process {
	addr := ""
	for i, a := range args {
		if a == "--http-addr" {
			addr = args[i+1]
		}
	}
	p := &process{t: t, base: "http://" + addr, log: filepath.Join(dir, "node.log"), args: args}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() { // the node's own account, before its directory goes
			if out, err := os.ReadFile(p.log); err == nil {
				t.Logf("the end of %s's log:\n%s", p.base, out[max(0, len(out)-6000):])
			}
		}
	})
	return p
}

// start runs the process and waits until it is ready.
func (p *process) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = childCommand(p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	// One goroutine waits for the process; everyone else watches done.
	done := make(chan struct{})
	p.done = done
	go func(cmd *exec.Cmd) { p.waitErr = cmd.Wait(); close(done) }(p.cmd)
	await.Until(p.t, "caregrid at "+p.base+" to be ready", startLimit, func() bool {
		select {
		case <-done:
			out, _ := os.ReadFile(p.log)
			p.t.Fatalf("caregrid exited before it was ready (%v):\n%s", p.waitErr, out)
		default:
		}
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// startLimit bounds a node's start: migrations and a cluster join, by a
// -race binary, beside other tests on two cores.
const startLimit = 90 * time.Second

// ended marks the process as gone and fails the test if it reported a race.
func (p *process) ended() {
	p.cmd, p.done = nil, nil
	p.checkLog()
}

// checkLog fails the test that started the process when the process wrote
// a race report since the last check.
func (p *process) checkLog() {
	f, err := os.Open(p.log)
	if err != nil {
		return // never started
	}
	defer f.Close()
	if _, err := f.Seek(p.checked, io.SeekStart); err != nil {
		p.t.Errorf("read %s: %v", p.log, err)
		return
	}
	out, err := io.ReadAll(f)
	if err != nil {
		p.t.Errorf("read %s: %v", p.log, err)
		return
	}
	p.checked += int64(len(out))
	for _, r := range raceReports(string(out)) {
		p.t.Errorf("caregrid at %s reported a race (log %s):\n%s", p.base, p.log, r)
	}
}

// kill ends the process with SIGKILL: no shutdown, nothing flushed.
func (p *process) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.ended()
}

// stopLimit bounds a stop after SIGTERM: draining HTTP, leaving the
// cluster and stopping the actor system (the node's own bound is 30 s).
const stopLimit = 45 * time.Second

// terminate sends SIGTERM and waits for the process to end (it must within
// stopLimit); it returns how long the stop took.
func (p *process) terminate() time.Duration {
	p.t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		p.ended()
	case <-time.After(stopLimit):
		p.kill()
		p.t.Fatalf("the process did not stop within %v of SIGTERM", stopLimit)
	}
	return time.Since(start)
}

// exits waits for the process to end by itself and returns how it ended.
func (p *process) exits(within time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		err := p.waitErr
		p.ended()
		return err
	case <-time.After(within):
		p.kill()
		p.t.Fatalf("the process did not end within %v", within)
		return nil
	}
}
