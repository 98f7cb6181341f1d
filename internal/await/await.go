// Package await is how caregrid's tests wait for something to happen: they
// poll for the event itself instead of sleeping for a guessed time, and the
// bound they give is a margin that holds under -race on a busy 2-core
// machine, not a claim about speed. A test that makes a claim about time
// measures it (Until returns how long it waited) and logs it, or controls
// the clock of the code under test.
package await

import (
	"testing"
	"time"
)

// interval is how often a condition is polled: far below any bound a test
// gives, far above the cost of the conditions tests poll.
const interval = 20 * time.Millisecond

// Until polls cond until it holds and returns how long that took; the test
// fails, naming what it waited for, when cond has not held within limit.
func Until(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: it did not happen", limit, what)
		}
		time.Sleep(interval)
	}
	return time.Since(start)
}

// Throughout checks that cond holds at every poll for the whole of d, and
// fails the test at the first poll where it does not. It is for absences
// (nobody was dropped, nothing was sent), which can only be shown over the
// window in which they would have happened.
func Throughout(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if !cond() {
			t.Fatalf("%s stopped holding after %v of %v", what, d-time.Until(deadline), d)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(interval)
	}
}
