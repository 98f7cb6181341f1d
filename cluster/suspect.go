package cluster

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
)

// suspects are the members whose remoting connection was lost: a killed
// process's connections are reset at once by the kernel, long before the
// membership's own timeouts (static peers' grace, Consul's TTL) notice it
// is gone. A provider asks a suspect at once, and if it does not answer
// within a poll (half a second) leaves it out of the topology, so that the
// identities it owned move to the live members and the requests waiting on
// it are retried there (the patched DefaultContext). Leaving the topology
// blocks a member's id for good, hence the question first: a connection
// lost to a live member (a network blip) costs nothing. A paused process
// keeps its connections open and is not suspected this way: the
// membership's timeouts find it.
type suspects struct {
	mu     sync.Mutex
	closed map[string]time.Time // address -> when its connection closed
	sub    *eventstream.Subscription
	system *actor.ActorSystem
	// changed is called (off the event stream's goroutine) when an
	// address becomes suspect, so the provider publishes a new topology.
	changed func()
}

func newSuspects(system *actor.ActorSystem, changed func()) *suspects {
	s := &suspects{closed: map[string]time.Time{}, system: system, changed: changed}
	s.sub = system.EventStream.Subscribe(func(evt interface{}) {
		if e, ok := evt.(*remote.EndpointTerminatedEvent); ok && e.Lost {
			s.mu.Lock()
			s.closed[e.Address] = time.Now()
			s.mu.Unlock()
			go s.changed()
		}
	})
	return s
}

// suspected reports whether address's connection closed since heard, the
// last time the member there answered.
func (s *suspects) suspected(address string, heard time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.closed[address]
	return ok && at.After(heard)
}

// clear forgets the suspicion of address: the member there answered.
func (s *suspects) clear(address string) {
	s.mu.Lock()
	delete(s.closed, address)
	s.mu.Unlock()
}

func (s *suspects) stop() {
	if s != nil && s.sub != nil {
		s.system.EventStream.Unsubscribe(s.sub)
	}
}
