// Package embedpg runs a private PostgreSQL server for the embedded default
// (`make run` with no DATABASE_URL): it finds the server binaries installed
// on the machine, initialises a data directory once, starts the server on a
// free loopback port and stops it on exit.
//
// PostgreSQL refuses to run as root; when this process is root it runs the
// server as the unprivileged "postgres" system user (runuser), which must
// own the data directory and be able to reach it.
package embedpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Database is the database the embedded server serves caregrid from.
const Database = "caregrid"

// Server is a running embedded PostgreSQL.
type Server struct {
	// URL connects to the caregrid database.
	URL     string
	dataDir string
	bin     string
	runAs   string
	lock    *os.File // held while this process owns the server
	// attached: another process owns the server (Open); Stop leaves it.
	attached bool
}

// ErrInUse is returned by Start when another live process owns the data
// directory's server (a `caregrid serve`, or an admin command).
var ErrInUse = errors.New("the embedded database is in use by another caregrid process")

// ErrNoBinaries is returned when no PostgreSQL server is installed.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL 15 or newer " +
	"(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), or set DATABASE_URL")

// findBin returns the directory holding initdb and pg_ctl: PATH first, then
// the newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start starts (initialising if needed) the server whose data lives in dir.
func Start(ctx context.Context, dir string) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{dataDir: filepath.Join(abs, "postgres"), bin: bin}
	// One owner at a time: the server below stops whatever server holds the
	// directory (one left by a killed owner), which must never be a live
	// owner's. The lock is the kernel's (flock), so it dies with its process.
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, err
	}
	if s.lock, err = lockDir(abs); err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			s.unlock()
		}
	}()
	if os.Geteuid() == 0 {
		if err := s.prepareForPostgresUser(abs); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if out, err := s.run(ctx, "initdb", "-D", s.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"); err != nil {
			return nil, fmt.Errorf("initdb: %w\n%s", err, out)
		}
	}
	// A server left running by a killed process holds the directory; stop it.
	_, _ = s.run(ctx, "pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200", port)
	if out, err := s.run(ctx, "pg_ctl", "start", "-D", s.dataDir, "-o", opts, "-l", filepath.Join(s.dataDir, "server.log"), "-w", "-t", "60"); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %w\n%s (see %s)", err, out, filepath.Join(s.dataDir, "server.log"))
	}
	base := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/", port)
	if err := createDatabase(ctx, base+"postgres?sslmode=disable"); err != nil {
		_ = s.Stop()
		return nil, err
	}
	s.URL = base + Database + "?sslmode=disable"
	started = true
	return s, nil
}

// Open reaches the embedded database under dir for a command that runs
// beside the node: the server a running `caregrid serve` owns (found by
// its postmaster.pid, which names its port), or else one this process
// starts and owns. Stop then stops only a server this process started.
func Open(ctx context.Context, dir string) (*Server, error) {
	s, err := Start(ctx, dir)
	if !errors.Is(err, ErrInUse) {
		return s, err
	}
	abs, aerr := filepath.Abs(dir)
	if aerr != nil {
		return nil, aerr
	}
	port, perr := runningPort(filepath.Join(abs, "postgres"))
	if perr != nil {
		return nil, fmt.Errorf("%w, and its server's port is unknown: %v", err, perr)
	}
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, Database)
	conn, cerr := pgx.Connect(ctx, url)
	if cerr != nil {
		return nil, fmt.Errorf("%w, and its server on port %d does not answer: %v", err, port, cerr)
	}
	_ = conn.Close(ctx)
	return &Server{URL: url, attached: true}, nil
}

// runningPort reads the port of the server running on dataDir from its
// postmaster.pid (line 4, PostgreSQL's LOCK_FILE_LINE_PORT).
func runningPort(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, errors.New("postmaster.pid has no port line")
	}
	return strconv.Atoi(strings.TrimSpace(lines[3]))
}

// lockDir takes the directory's owner lock, or says who holds it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "embedded-postgres.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (pid %s)", ErrInUse, strings.TrimSpace(string(holder)))
		}
		return nil, err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (s *Server) unlock() {
	if s.lock != nil {
		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		s.lock.Close()
		s.lock = nil
	}
}

// prepareForPostgresUser makes dataDir belong to the postgres user, and
// checks that user can reach it.
func (s *Server) prepareForPostgresUser(parent string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return errors.New("running as root, and PostgreSQL will not: create a 'postgres' system user, or run caregrid as an ordinary user")
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return errors.New("running as root needs runuser (util-linux) to start PostgreSQL as the postgres user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return err
	}
	// The postgres user must traverse (not list) our data directory to
	// reach its own subdirectory.
	if fi, err := os.Stat(parent); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(parent, fi.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	if err := os.Chown(s.dataDir, uid, gid); err != nil {
		return err
	}
	s.runAs = "postgres"
	if out, err := exec.Command("runuser", "-u", "postgres", "--", "test", "-w", s.dataDir).CombinedOutput(); err != nil {
		return fmt.Errorf("the postgres user cannot reach %s (a parent directory is closed to it): use a --data-dir it can reach: %v %s", parent, err, out)
	}
	return nil
}

func (s *Server) run(ctx context.Context, tool string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, tool)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Stop shuts the server down (fast: rolls back open transactions).
func (s *Server) Stop() error {
	if s.attached {
		return nil
	}
	defer s.unlock() // after the server has stopped
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := s.run(ctx, "pg_ctl", "stop", "-D", s.dataDir, "-m", "fast", "-w"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func createDatabase(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to embedded PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, Database).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+Database); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
