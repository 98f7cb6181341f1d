package await

import (
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that notes a failure instead of ending the
// test, so the helpers' failures can be checked.
type recorder struct {
	testing.TB
	failed atomic.Bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed.Store(true)
	panic(r) // ends the helper as t.Fatalf ends the goroutine
}

func run(r *recorder, f func()) {
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	f()
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	r := &recorder{TB: t}
	var took time.Duration
	run(r, func() { took = Until(r, "three polls", time.Minute, func() bool { return n.Add(1) == 3 }) })
	if r.failed.Load() || n.Load() != 3 {
		t.Fatalf("Until failed=%v after %d polls, want success at the third", r.failed.Load(), n.Load())
	}
	if took < 2*interval {
		t.Fatalf("Until returned %v, want at least two intervals of polling", took)
	}
}

func TestUntilFailsWhenTheConditionNeverHolds(t *testing.T) {
	r := &recorder{TB: t}
	run(r, func() { Until(r, "never", 3*interval, func() bool { return false }) })
	if !r.failed.Load() {
		t.Fatal("Until(never) did not fail the test")
	}
}

func TestThroughoutFailsAtTheFirstLapse(t *testing.T) {
	var n atomic.Int32
	r := &recorder{TB: t}
	run(r, func() { Throughout(r, "the first two polls", time.Minute, func() bool { return n.Add(1) < 3 }) })
	if !r.failed.Load() || n.Load() != 3 {
		t.Fatalf("Throughout failed=%v after %d polls, want a failure at the third", r.failed.Load(), n.Load())
	}
	ok := &recorder{TB: t}
	run(ok, func() { Throughout(ok, "always", 3*interval, func() bool { return true }) })
	if ok.failed.Load() {
		t.Fatal("Throughout(always) failed")
	}
}
