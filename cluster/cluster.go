// Package cluster builds caregrid's actor system and proto.actor cluster,
// and is the one place that knows how to call a grain: per-call options with
// a real retry backoff, and a retry loop for activations that were fenced.
//
// Providers: the in-memory provider, for the single-node embedded default
// and for several members inside one test process (they share an Agent),
// and static peers (peers.go) for members in separate processes. Consul
// arrives with the rest of the multi-node work.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
)

// Agent is the in-memory membership registry members of one process share.
type Agent = test.InMemAgent

// NewAgent returns an empty registry.
func NewAgent() *Agent { return test.NewInMemAgent() }

// Config says how to build one member.
type Config struct {
	// Name is the cluster name; members with different names never meet.
	Name string
	// Host and Port are the remoting address. Port 0 picks a free one.
	Host string
	Port int
	// TLS is the remoting's mutual TLS, required: there is no plaintext
	// remoting. Its certificate says what this node is: a member, an edge
	// or a service (both of which join as clients).
	TLS *TLS
	// Agent is the membership registry; nil makes a private one (single node).
	Agent *Agent
	// Peers, when set, are the remoting addresses (host:port) of every
	// member, this one included: the members find each other by polling
	// them (static peers) instead of through an Agent.
	Peers []string
	// Consul, when set, finds the members through a Consul agent (see
	// Consul); Peers and Consul are exclusive.
	Consul *Consul
	// Kinds are the grain kinds this member hosts.
	Kinds []*actorcluster.Kind
	// Client joins as a cluster client (an edge-only node): it calls grains
	// on the members and hosts none. It needs Peers.
	Client bool
	// Logger receives proto.actor's own logs; nil: warnings and errors as
	// JSON on stderr (its info logs are chatty).
	Logger *slog.Logger
	// Admit, when set, holds this member out of the others' topology (it
	// does not register with Consul nor answer the static peers' poll)
	// until it is closed: a node closes it once it can serve, so that a
	// member that starts (or restarts) gets no grain request it would
	// refuse. Nil: admitted at once.
	Admit <-chan struct{}
	// OnDropped is called when this member finds its peers have dropped
	// it (a peer answered MemberDropped, it was paused longer than they
	// wait, or past Consul's TTL): its id is blocked for good, and it must
	// rejoin under a new one (see Consul's OnDropped, which takes
	// precedence with Consul).
	OnDropped func()
}

// Node is one started member.
type Node struct {
	System  *actor.ActorSystem
	Cluster *actorcluster.Cluster
	// Inbound is who is connected to this node's remoting and what was
	// dropped (operators' view and metrics).
	Inbound *Inbound
	// Self is what this node's certificate says it is.
	Self   Peer
	leaver interface{ leave() } // a provider with a goodbye (peers, Consul)
	client bool                 // a cluster client: hosts no grains
	stop   sync.Once
	// stats are this member's own figures for its status (SetStats).
	stats atomic.Pointer[func() map[string]float64]
	// seen remembers members that left the topology (View).
	seen departures
}

// Start builds the actor system, joins the cluster and waits until this
// member sees itself in the topology.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	return start(ctx, cfg, nil)
}

// StartGroup starts several members in one process, for tests and tools:
// each member's remoting starts in turn and no member joins, and so talks
// to another, until every remoting has started (proto.actor's remote.Start
// wrote gRPC's global logger for each member; third_party makes that once
// per process, and the gate keeps the starts orderly).
func StartGroup(ctx context.Context, cfgs ...Config) ([]*Node, error) {
	gate := make(chan struct{})
	type result struct {
		n   *Node
		err error
	}
	results := make([]chan result, len(cfgs))
	for i, cfg := range cfgs {
		reached := make(chan struct{})
		results[i] = make(chan result, 1)
		go func() {
			n, err := start(ctx, cfg, &joinGate{reached: reached, open: gate})
			results[i] <- result{n, err}
		}()
		select {
		case <-reached:
		case r := <-results[i]: // failed before joining
			close(gate)
			return nil, r.err
		}
	}
	close(gate)
	nodes := make([]*Node, 0, len(cfgs))
	var firstErr error
	for _, ch := range results {
		r := <-ch
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		if r.n != nil {
			nodes = append(nodes, r.n)
		}
	}
	if firstErr != nil {
		for _, n := range nodes {
			n.Stop(false)
		}
		return nil, firstErr
	}
	return nodes, nil
}

// joinGate holds a member between starting its remoting and joining.
type joinGate struct {
	reached chan struct{}
	open    <-chan struct{}
}

// gatedProvider waits at the join gate before registering the member.
type gatedProvider struct {
	actorcluster.ClusterProvider
	gate *joinGate
}

func (p gatedProvider) StartMember(c *actorcluster.Cluster) error {
	close(p.gate.reached)
	<-p.gate.open
	return p.ClusterProvider.StartMember(c)
}

func start(ctx context.Context, cfg Config, gate *joinGate) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("cluster: a name is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	inbound := newInbound()
	remoteOpts, self, err := remoteOptions(cfg.TLS, inbound)
	if err != nil {
		return nil, err
	}
	if self.Kind != PeerMember && !cfg.Client {
		return nil, fmt.Errorf("cluster: a %s certificate joins as a client only; members need one for %s", self.Kind, PeerName)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	provider, leaver, err := newProvider(cfg, logger)
	if err != nil {
		return nil, err
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	if gate != nil {
		provider = gatedProvider{ClusterProvider: provider, gate: gate}
	}
	ccfg := actorcluster.Configure(cfg.Name, provider, disthash.New(),
		remote.Configure(cfg.Host, cfg.Port, remoteOpts...),
		actorcluster.WithKinds(cfg.Kinds...),
		actorcluster.WithRequestTimeout(DefaultTimeout),
	)
	c := actorcluster.New(system, ccfg)
	if cfg.Client && leaver == nil {
		return nil, errors.New("cluster: a client needs a way to find the members (Peers or Consul)")
	}
	n := &Node{System: system, Cluster: c, Inbound: inbound, Self: self, leaver: leaver, client: cfg.Client}
	if cfg.Client {
		c.StartClient()
	} else {
		c.StartMember()
		if leaver == nil { // not static peers or Consul: answer their poll anyway
			if err := answerMembership(c); err != nil {
				n.Stop(false)
				return nil, err
			}
		}
	}
	if err := n.spawnStatus(); err != nil {
		n.Stop(false)
		return nil, err
	}
	if err := n.waitMember(ctx); err != nil {
		n.Stop(false)
		return nil, err
	}
	return n, nil
}

// newProvider is how the member finds the others: static peers, Consul,
// or else the in-memory agent (a private one for a single node). A
// provider with a goodbye is also returned as the leaver.
func newProvider(cfg Config, logger *slog.Logger) (actorcluster.ClusterProvider, interface{ leave() }, error) {
	switch {
	case len(cfg.Peers) > 0 && cfg.Consul != nil:
		return nil, nil, errors.New("cluster: static peers or Consul, not both")
	case len(cfg.Peers) > 0:
		peers := newPeersProvider(cfg.Peers, logger)
		peers.onDropped, peers.admit = cfg.OnDropped, cfg.Admit
		return peers, peers, nil
	case cfg.Consul != nil:
		cc := *cfg.Consul
		if cc.OnDropped == nil {
			cc.OnDropped = cfg.OnDropped
		}
		cp, err := newConsulProvider(cc, cfg.Name, logger)
		if err != nil {
			return nil, nil, err
		}
		cp.admit = cfg.Admit
		return cp, cp, nil
	}
	agent := cfg.Agent
	if agent == nil {
		agent = NewAgent()
	}
	return test.NewTestProvider(agent), nil, nil
}

// waitMember polls until the topology lists this member (a client: any
// member).
func (n *Node) waitMember(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if n.Ready() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: member %s did not join the topology: %w", n.System.ID, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Address is this member's remoting address (host:port).
func (n *Node) Address() string { return n.System.Address() }

// Ready reports whether this member is in the topology it sees; a client,
// whether it sees any member to send grain requests to.
func (n *Node) Ready() error {
	if n.client {
		if n.Members() == 0 {
			return errors.New("no cluster member is reachable")
		}
		return nil
	}
	if !n.Cluster.MemberList.ContainsMemberID(n.System.ID) {
		return errors.New("this member is not in the cluster topology")
	}
	return nil
}

// Members is the number of members this node sees.
func (n *Node) Members() int { return n.Cluster.MemberList.Length() }

// Stop leaves the cluster. graceful hands identities over first (slower).
// Stopping twice is harmless (proto.actor's own Shutdown panics).
func (n *Node) Stop(graceful bool) {
	n.stop.Do(func() {
		if n.client {
			// proto.actor's Shutdown sets gossip state, which a client
			// never started (a nil PID: it panics).
			if n.leaver != nil {
				_ = n.Cluster.Config.ClusterProvider.Shutdown(false)
			}
			n.System.Shutdown()
			n.Cluster.Remote.Shutdown(false)
			return
		}
		if graceful && n.leaver != nil {
			n.leaver.leave() // before the actor system stops, while remoting still works
		}
		n.Cluster.Shutdown(graceful)
		if !graceful && n.leaver != nil {
			// proto.actor stops its provider on a graceful shutdown only:
			// a member that rejoins in the same process must not leave the
			// old one polling, or heartbeating its old id to Consul.
			_ = n.Cluster.Config.ClusterProvider.Shutdown(false)
		}
	})
}

// HostPort splits an address for display.
func HostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	port, _ := strconv.Atoi(p)
	return h, port
}
