package cluster

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
)

// Failure detection. Every member (and every edge) asks each member of its
// topology "who are you" every heartbeat; the providers take a member out
// of the topology, and block its id for good, when:
//
//   - it answered no heartbeat for silentFor: a paused or hung process,
//     found before Consul's TTL (3 s) runs out;
//   - its remoting connection was lost (a killed process's connections are
//     reset at once by the kernel) and it does not answer the question
//     asked at once;
//   - a request has waited a second on it (actorcluster.MemberStalled), it
//     does not answer the question asked at once, and it was silent for
//     stalledSilence.
//
// A dropped member hears it: its next heartbeat to a peer that dropped it
// is answered with MemberDropped, and it rejoins under a new id (OnDropped).
// A member that finds its own heartbeat loop ran late by more than
// silentFor (it was paused) rejoins without waiting to be told: until it
// does it would serve under an id its peers dropped, its activations
// fenced by theirs and theirs by its own.
const (
	heartbeat      = 500 * time.Millisecond
	silentFor      = 2 * time.Second
	stalledSilence = time.Second
	// suspectProbe bounds the question asked at once of a suspect.
	suspectProbe = 500 * time.Millisecond
)

// suspects are the members, by address, whose remoting connection was
// lost or to whom a request stalled, since when.
type suspects struct {
	mu      sync.Mutex
	closed  map[string]time.Time // address -> when its connection was lost
	stalled map[string]time.Time // address -> when a request to it stalled
	subs    []*eventstream.Subscription
	system  *actor.ActorSystem
	// changed is called (off the event stream's goroutine) when an
	// address becomes suspect, so the provider asks it now.
	changed func()
}

func newSuspects(system *actor.ActorSystem, changed func()) *suspects {
	s := &suspects{closed: map[string]time.Time{}, stalled: map[string]time.Time{}, system: system, changed: changed}
	s.subs = append(s.subs, system.EventStream.Subscribe(func(evt interface{}) {
		switch e := evt.(type) {
		case *remote.EndpointTerminatedEvent:
			if e.Lost {
				s.mark(s.closed, e.Address)
			}
		case *actorcluster.MemberStalled:
			s.mark(s.stalled, e.Address)
		}
	}))
	return s
}

func (s *suspects) mark(set map[string]time.Time, address string) {
	s.mu.Lock()
	set[address] = time.Now()
	s.mu.Unlock()
	go s.changed()
}

// verdict is what the detector makes of one member.
type verdict int

const (
	alive             verdict = iota
	askNow                    // suspect: ask it now, whatever its backoff
	dropUnlessAnswers         // out unless it answers the question asked now
	drop                      // out: silent for silentFor
)

// judge weighs a member on address last heard at heard.
func (s *suspects) judge(address string, heard, now time.Time) verdict {
	if now.Sub(heard) >= silentFor {
		return drop
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.closed[address]; ok && at.After(heard) {
		return dropUnlessAnswers
	}
	if at, ok := s.stalled[address]; ok && at.After(heard) {
		if now.Sub(heard) >= stalledSilence {
			return dropUnlessAnswers
		}
		return askNow
	}
	return alive
}

// clear forgets the suspicions of address: the member there answered.
func (s *suspects) clear(address string) {
	s.mu.Lock()
	delete(s.closed, address)
	delete(s.stalled, address)
	s.mu.Unlock()
}

func (s *suspects) stop() {
	if s == nil {
		return
	}
	for _, sub := range s.subs {
		s.system.EventStream.Unsubscribe(sub)
	}
}

// loopGap tells a heartbeat loop whether this process stopped running
// (paused, or starved) for longer than its peers wait for an answer: they
// have dropped it. The first call only sets the mark.
type loopGap struct{ last time.Time }

func (g *loopGap) paused(now time.Time) (time.Duration, bool) {
	gap := now.Sub(g.last)
	first := g.last.IsZero()
	g.last = now
	return gap, !first && gap > silentFor
}
