// Copyright (C) 2017 - 2024 Asynkron.se <http://www.asynkron.se>

package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
)

// Defines a type to provide DefaultContext configurations / implementations.
type ContextProducer func(*Cluster) Context

// Defines a default cluster context hashBytes structure.
type DefaultContext struct {
	cluster *Cluster
}

var _ Context = (*DefaultContext)(nil)

// Creates a new DefaultContext value and returns
// a pointer to its memory address as a Context.
func newDefaultClusterContext(cluster *Cluster) Context {
	clusterContext := DefaultContext{
		cluster: cluster,
	}

	return &clusterContext
}

func (dcc *DefaultContext) Request(identity, kind string, message interface{}, opts ...GrainCallOption) (interface{}, error) {
	var err error

	var resp interface{}

	var counter int
	callConfig := NewGrainCallOptions(dcc.cluster)
	for _, o := range opts {
		o(callConfig)
	}

	_context := callConfig.Context

	// get the configuration from the composed Cluster value
	cfg := dcc.cluster.Config.ToClusterContextConfig(dcc.cluster.Logger())

	start := time.Now()

	dcc.cluster.Logger().Debug("Requesting", slog.String("identity", identity), slog.String("kind", kind), slog.String("type", reflect.TypeOf(message).String()), slog.Any("message", message))

	// crate a new Timeout Context
	ttl := callConfig.Timeout

	ctx, cancel := context.WithTimeout(context.Background(), ttl)
	defer cancel()

selectloop:
	for {
		select {
		case <-ctx.Done():
			// TODO: handler throttling and messaging here
			err = fmt.Errorf("request failed: %w", ctx.Err())

			break selectloop
		default:
			if counter >= callConfig.RetryCount {
				err = fmt.Errorf("have reached max retries: %v", callConfig.RetryCount)

				break selectloop
			}
			pid := dcc.getPid(identity, kind)
			if pid == nil {
				dcc.cluster.Logger().Debug("Requesting PID from IdentityLookup but got nil", slog.String("identity", identity), slog.String("kind", kind))
				counter = callConfig.RetryAction(counter)
				continue
			}

			// TODO: why is err != nil when res != nil?
			resp, err = dcc.await(_context.RequestFuture(pid, message, ttl), pid) // caregrid patch: see await
			if resp != nil {
				break selectloop
			}
			if err != nil {
				dcc.cluster.Logger().Error("cluster.RequestFuture failed", slog.Any("error", err), slog.Any("pid", pid))
				switch err {
				case actor.ErrTimeout, remote.ErrTimeout, actor.ErrDeadLetter, remote.ErrDeadLetter, errMemberLeft: // caregrid patch: errMemberLeft
					counter = callConfig.RetryAction(counter)
					dcc.cluster.PidCache.Remove(identity, kind)
					continue
				default:
					break selectloop
				}
			}

			// TODO: add metrics to increment retries
		}
	}

	totalTime := time.Since(start)
	// TODO: add metrics ot set histogram for total request time

	if contextError := ctx.Err(); contextError != nil && cfg.requestLogThrottle() == actor.Open {
		// context timeout exceeded, report and return
		dcc.cluster.Logger().Warn("Request retried but failed", slog.String("identity", identity), slog.String("kind", kind), slog.Duration("duration", totalTime))
	}

	return resp, err
}

func (dcc *DefaultContext) RequestFuture(identity string, kind string, message interface{}, opts ...GrainCallOption) (*actor.Future, error) {
	var counter int
	callConfig := DefaultGrainCallConfig(dcc.cluster)
	for _, o := range opts {
		o(callConfig)
	}

	_context := callConfig.Context

	dcc.cluster.Logger().Debug("Requesting future", slog.String("identity", identity), slog.String("kind", kind), slog.String("type", reflect.TypeOf(message).String()), slog.Any("message", message))

	// crate a new Timeout Context
	ttl := callConfig.Timeout

	ctx, cancel := context.WithTimeout(context.Background(), ttl)
	defer cancel()

	for {
		select {
		case <-ctx.Done():
			// TODO: handler throttling and messaging here
			err := fmt.Errorf("request failed: %w", ctx.Err())
			return nil, err
		default:
			if counter >= callConfig.RetryCount {
				return nil, fmt.Errorf("have reached max retries: %v", callConfig.RetryCount)
			}

			pid := dcc.getPid(identity, kind)
			if pid == nil {
				dcc.cluster.Logger().Debug("Requesting PID from IdentityLookup but got nil", slog.String("identity", identity), slog.String("kind", kind))
				counter = callConfig.RetryAction(counter)
				continue
			}

			f := _context.RequestFuture(pid, message, ttl)
			return f, nil
		}
	}
}

// caregrid patch: errMemberLeft ends the wait for a reply from a member
// that left the topology: the request is retried at once (on the
// identity's new owner) instead of waiting out its timeout, which the
// library does even when the member's connection closed milliseconds after
// the request went.
var errMemberLeft = errors.New("the member the request went to left the cluster topology")

// ErrMemberLeft is what AwaitMember returns when address left the topology.
var ErrMemberLeft = errMemberLeft

// memberLeftPoll is how often a request waiting on another member looks
// whether that member is still in the topology.
const memberLeftPoll = 50 * time.Millisecond

// await is f.Result(), cut short once pid's member left the topology.
func (dcc *DefaultContext) await(f *actor.Future, pid *actor.PID) (interface{}, error) {
	return dcc.cluster.AwaitMember(f, pid.Address)
}

// MemberStalled is published on the actor system's event stream, once per
// request, when a request has waited StallAfter for a reply from the member
// on Address (caregrid patch): the membership provider asks that member at
// once instead of at its next heartbeat, and drops it if it is silent.
type MemberStalled struct{ Address string }

// StallAfter is how long a request waits on another member before it
// reports the member as stalled (MemberStalled).
const StallAfter = time.Second

// AwaitMember is f.Result(), cut short with ErrMemberLeft once no member of
// the topology listens on address (caregrid patch: requests to a member
// that left are retried at once, not after their timeout). A request still
// waiting after StallAfter publishes MemberStalled.
func (c *Cluster) AwaitMember(f *actor.Future, address string) (interface{}, error) {
	if address == c.ActorSystem.Address() || address == "nonhost" {
		return f.Result()
	}
	done := f.Done()
	t := time.NewTicker(memberLeftPoll)
	defer t.Stop()
	stallAt := time.Now().Add(StallAfter)
	for {
		select {
		case <-done:
			return f.Result()
		case now := <-t.C:
			if !c.MemberList.ContainsAddress(address) {
				return nil, errMemberLeft
			}
			if !stallAt.IsZero() && now.After(stallAt) {
				stallAt = time.Time{}
				c.ActorSystem.EventStream.Publish(&MemberStalled{Address: address})
			}
		}
	}
}

// gets the cached PID for the given identity
// it can return nil if none is found.
func (dcc *DefaultContext) getPid(identity, kind string) *actor.PID {
	pid, _ := dcc.cluster.PidCache.Get(identity, kind)
	if pid == nil {
		pid = dcc.cluster.Get(identity, kind)
		if pid != nil {
			dcc.cluster.PidCache.Set(identity, kind, pid)
		}
	}

	return pid
}
