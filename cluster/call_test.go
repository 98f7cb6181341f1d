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

// TestCallOptionsAreFreshPerCall: options applied to one call's config must
// not reach another's (proto.actor's RequestFuture mutates a shared default).
func TestCallOptionsAreFreshPerCall(t *testing.T) {
	a, b := &actorcluster.GrainCallConfig{}, &actorcluster.GrainCallConfig{}
	for _, o := range CallOptions(2 * time.Second) {
		o(a)
	}
	for _, o := range CallOptions(0) {
		o(b)
	}
	if a.Timeout != 2*time.Second || b.Timeout != DefaultTimeout {
		t.Fatalf("timeouts = %v, %v; want 2s and the default", a.Timeout, b.Timeout)
	}
	start := time.Now()
	if next := a.RetryAction(2); next != 3 {
		t.Fatalf("RetryAction(2) = %d, want 3", next)
	}
	if slept := time.Since(start); slept < Backoff(2) {
		t.Fatalf("RetryAction(2) slept %v, want at least %v", slept, Backoff(2))
	}
}
