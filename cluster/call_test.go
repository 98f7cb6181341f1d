package cluster

import (
	"testing"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
)

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	want := []time.Duration{10, 20, 40, 80, 160, 320, 500, 500, 500}
	for i, w := range want {
		if got := Backoff(i); got != w*time.Millisecond {
			t.Errorf("Backoff(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
}

// TestCallOptionsAreFreshPerCall: proto.actor applies each call's options
// to one shared default config (RequestFuture mutates it), so whatever one
// call set stays there for the next. Every call's options must therefore
// set everything a call depends on: applied in turn to one shared config,
// as the library does, a call without a timeout must not inherit the
// previous call's, nor its retries.
func TestCallOptionsAreFreshPerCall(t *testing.T) {
	shared := &actorcluster.GrainCallConfig{}
	var sentinelRan bool
	for _, o := range []actorcluster.GrainCallOption{ // what an earlier call left behind
		actorcluster.WithTimeout(time.Nanosecond),
		actorcluster.WithRetryCount(0),
		actorcluster.WithRetryAction(func(i int) int { sentinelRan = true; return i + 100 }),
	} {
		o(shared)
	}
	for _, o := range CallOptions(2 * time.Second) {
		o(shared)
	}
	if shared.Timeout != 2*time.Second || shared.RetryCount != 8 {
		t.Fatalf("after CallOptions(2s): timeout %v, retries %d; want 2s and 8", shared.Timeout, shared.RetryCount)
	}
	for _, o := range CallOptions(0) {
		o(shared)
	}
	if shared.Timeout != DefaultTimeout || shared.RetryCount != 8 {
		t.Fatalf("CallOptions(0) after CallOptions(2s) on one config: timeout %v, retries %d; want %v and 8",
			shared.Timeout, shared.RetryCount, DefaultTimeout)
	}
	start := time.Now()
	if next := shared.RetryAction(2); next != 3 || sentinelRan {
		t.Fatalf("RetryAction(2) = %d (the earlier call's ran: %v), want 3 from our own", next, sentinelRan)
	}
	if slept := time.Since(start); slept < Backoff(2) {
		t.Fatalf("RetryAction(2) slept %v, want at least %v", slept, Backoff(2))
	}
}
