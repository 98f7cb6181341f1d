package embedpg

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestStartStopRestart runs the real server binaries: initialise, serve,
// stop, and start again on the same data with the data still there.
// dataDir is a directory the postgres user (which runs the server when we
// are root) can reach: not t.TempDir, whose parent is closed to it.
func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "caregrid-embedpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStartStopRestart(t *testing.T) {
	dir := dataDir(t)
	ctx := context.Background()
	s, err := Start(ctx, dir)
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		_ = s.Stop()
		t.Fatalf("connect %s: %v", s.URL, err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE kept (v INT); INSERT INTO kept VALUES (42)`)
	conn.Close(ctx)
	if err != nil {
		_ = s.Stop()
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop = %v", err)
	}

	s, err = Start(ctx, dir)
	if err != nil {
		t.Fatalf("Start(again) = %v", err)
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop = %v", err)
		}
	}()
	conn, err = pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: v = %d, %v; want 42", v, err)
	}
}

// TestASecondOwnerIsRefused: while one process owns the directory's server,
// another Start is refused with ErrInUse, and the first server goes on
// serving (before the lock, the second Start stopped it).
func TestASecondOwnerIsRefused(t *testing.T) {
	dir := dataDir(t)
	ctx := context.Background()
	s, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop() }()
	// The lock is per open file, so a second Start in this process meets it
	// as another process would.
	if _, err := Start(ctx, dir); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("a second Start: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("the first server after the refused Start: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAttachesToTheRunningServer: beside a running owner (a `caregrid
// serve`), Open reaches the same server by its postmaster.pid, and its
// Stop leaves that server serving.
func TestOpenAttachesToTheRunningServer(t *testing.T) {
	dir := dataDir(t)
	ctx := context.Background()
	s, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop() }()
	o, err := Open(ctx, dir)
	if err != nil {
		t.Fatalf("Open beside the owner: %v", err)
	}
	if o.URL != s.URL {
		t.Fatalf("Open's URL %s, the owner's %s", o.URL, s.URL)
	}
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("the owner's server after the attached Stop: %v", err)
	}
	conn.Close(ctx)
}
