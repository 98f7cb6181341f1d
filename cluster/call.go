package cluster

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
)

// DefaultTimeout bounds one grain request, retries included.
const DefaultTimeout = 5 * time.Second

// CallOptions returns fresh options for one grain request. They are built
// per call: proto.actor's RequestFuture mutates its shared default config,
// so options must never be shared between calls. The retry action sleeps
// with a capped exponential backoff (the library's default sleeps
// i*i*50 nanoseconds, i.e. not at all).
func CallOptions(timeout time.Duration) []actorcluster.GrainCallOption {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return []actorcluster.GrainCallOption{
		actorcluster.WithTimeout(timeout),
		actorcluster.WithRetryCount(8),
		actorcluster.WithRetryAction(func(i int) int {
			time.Sleep(Backoff(i))
			return i + 1
		}),
	}
}

// Backoff is the pause before retry i (0-based): 10ms doubling, at most 500ms.
func Backoff(i int) time.Duration {
	d := 10 * time.Millisecond << min(i, 6)
	return min(d, 500*time.Millisecond)
}

// maxFencedRetries bounds how often one call follows a fenced activation to
// its successor; more than a few means the identity is flapping.
const maxFencedRetries = 5

// Call runs one grain request, and runs it again when the activation that
// answered was fenced (it has stopped; the retry reaches the live one after
// the cached PID is dropped). fn builds its options with CallOptions.
func Call[T any](ctx context.Context, c *actorcluster.Cluster, kind, identity string, fn func() (T, error)) (T, error) {
	started := time.Now()
	for attempt := 0; ; attempt++ {
		out, err := fn()
		if err == nil || !messages.IsFenced(err) || attempt >= maxFencedRetries {
			observeCall(c, kind, started, err)
			return out, err
		}
		c.PidCache.Remove(identity, kind)
		select {
		case <-ctx.Done():
			observeCall(c, kind, started, err)
			return out, err
		case <-time.After(Backoff(attempt)):
		}
	}
}

// notFoundIdle is how long an activation with nothing to keep (no such
// record, a refused creation) lingers before it stops.
const notFoundIdle = 500 * time.Millisecond

// PassivateSoon stops an activation that has nothing to keep once it has
// been idle briefly, instead of at once: requests that reach an activation
// while a poison pill stops it are not answered and wait out their whole
// timeout (seen as a 503 under load when a second request followed a 404
// to the same id). Until it stops it answers from its state, as before.
func PassivateSoon(ctx actor.Context) {
	ctx.SetReceiveTimeout(notFoundIdle)
}
