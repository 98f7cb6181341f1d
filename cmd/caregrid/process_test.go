package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
)

// childArgsEnv, when set, makes the test binary run caregrid itself with
// these arguments (separated by \x1f) instead of the tests: the tests
// start real caregrid processes without building another binary.
const childArgsEnv = "CAREGRID_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		os.Args = append([]string{"caregrid"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// process is a caregrid node running as its own OS process.
type process struct {
	t    *testing.T
	args []string
	cmd  *exec.Cmd
	base string
	log  string
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
	t.Cleanup(func() { p.kill() })
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
	p.cmd = exec.Command(os.Args[0])
	p.cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(p.args, "\x1f"))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := os.ReadFile(p.log)
	p.t.Fatalf("caregrid did not become ready:\n%s", out)
}

// kill ends the process with SIGKILL: no shutdown, nothing flushed.
func (p *process) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// terminate sends SIGTERM and waits for the process to end (it must within
// 30 s); it returns how long the stop took.
func (p *process) terminate() time.Duration {
	p.t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.kill()
		p.t.Fatal("the process did not stop within 30 s of SIGTERM")
	}
	p.cmd = nil
	return time.Since(start)
}

// exits waits for the process to end by itself and returns how it ended.
func (p *process) exits(within time.Duration) error {
	p.t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		p.cmd = nil
		return err
	case <-time.After(within):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-done
		p.cmd = nil
		p.t.Fatalf("the process did not end within %v", within)
		return nil
	}
}
