package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// failures is a testing.TB that keeps what a helper reported instead of
// failing the test, so that the helper's own failures can be checked.
type failures struct {
	testing.TB
	errors []string
}

func (f *failures) Errorf(format string, args ...any) {
	f.errors = append(f.errors, format)
}

// TestARaceInAChildFailsTheTestThatStartedIt runs a child of this binary
// that races on purpose and hands its output to the check every node's
// stop runs. Under -race (as `make test` runs this package) the report is
// there and the check fails the test; without it there is no report to
// find, and the check must not invent one.
func TestARaceInAChildFailsTheTestThatStartedIt(t *testing.T) {
	log := filepath.Join(t.TempDir(), "node.log")
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := childCommand(raceForTest)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.Close()
	var exit *exec.ExitError
	rec := &failures{TB: t}
	p := &process{t: rec, log: log, base: "race-on-purpose"}
	p.checkLog()
	written, _ := os.ReadFile(log)
	if raceEnabled {
		if !errors.As(err, &exit) || exit.ExitCode() != 66 {
			t.Fatalf("the racing child ended with %v, want the race detector's exit status 66:\n%s", err, written)
		}
		if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "reported a race") {
			t.Fatalf("the check reported %q for a child that raced:\n%s", rec.errors, written)
		}
	} else if err != nil || len(rec.errors) != 0 {
		t.Fatalf("without -race: child %v, check reported %q:\n%s", err, rec.errors, written)
	}
	// Checked once: a second look at the same log reports nothing new.
	before := len(rec.errors)
	p.checkLog()
	if len(rec.errors) != before {
		t.Fatalf("the same report was raised twice")
	}
}

func TestRaceReportsFindEachReport(t *testing.T) {
	out := "started\n==================\nWARNING: DATA RACE\nWrite at 0x1 by goroutine 7:\n  main.f()\n" +
		"==================\nWARNING: DATA RACE\nRead at 0x2\nfatal error: concurrent map writes\n"
	got := raceReports(out)
	if len(got) != 3 || !strings.HasPrefix(got[0], "WARNING: DATA RACE\nWrite") || !strings.HasPrefix(got[1], "WARNING: DATA RACE\nRead") ||
		!strings.HasPrefix(got[2], "fatal error: concurrent map writes") {
		t.Fatalf("raceReports = %q, want the two race reports and the map fault", got)
	}
	if got := raceReports("serving on 127.0.0.1:8080\n"); len(got) != 0 {
		t.Fatalf("raceReports(clean log) = %q", got)
	}
}
