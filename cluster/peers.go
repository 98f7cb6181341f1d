package cluster

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
)

// Peer-list timing: peers are polled every heartbeat, and one that
// answered none for silentFor is out of the topology (suspect.go).
const (
	// A peer that stopped answering is asked less and less often, up to
	// this: each failed dial costs proto.actor two error lines.
	peerBackoffMax = 5 * time.Second
)

// peersProvider is the static-peers cluster provider: a fixed list of the
// remoting addresses of every member. Each member polls all of them over
// the remoting itself (so mutual TLS covers membership too) and makes the
// topology of those that answered lately.
type peersProvider struct {
	peers  []string
	logger *slog.Logger

	cluster *actorcluster.Cluster
	self    *actorcluster.Member
	// Used by poll only, which runs on one goroutine at a time.
	known map[string]*actorcluster.Member // peer address -> its last answer
	heard map[string]time.Time            // peer address -> when
	next  map[string]time.Time            // peer address -> when to ask a silent one again
	miss  map[string]int                  // peer address -> polls unanswered in a row
	// asked holds the addresses of peers that asked this member who it is
	// (written by the membership actor): a restarted peer is asked back at
	// once, not after its backoff.
	asked sync.Map
	// left holds the ids of members that said they are stopping (written
	// by the membership actor): they leave the topology at the next poll,
	// and are never taken back (a restart comes with a new id).
	left sync.Map
	// membership answers the peers' polls; it tells a member this one
	// dropped that it was dropped.
	membership *membership
	// suspects are peers whose connection closed (a killed process) or to
	// which a request stalled: asked at once, and out unless they answer.
	suspects *suspects
	// onDropped is told when this member finds its peers dropped it: a
	// peer answered MemberDropped, or this process did not run for longer
	// than they wait.
	onDropped   func()
	toldDropped sync.Once
	// admit, when set, is closed once this member may be asked (see
	// Config.Admit): until then it does not answer the peers' poll.
	admit <-chan struct{}
	gap   loopGap       // used by poll only
	wake  chan struct{} // a poll now, not at the next tick
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newPeersProvider(peers []string, logger *slog.Logger) *peersProvider {
	return &peersProvider{peers: slices.Clone(peers), logger: logger, known: map[string]*actorcluster.Member{},
		heard: map[string]time.Time{}, next: map[string]time.Time{}, miss: map[string]int{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (p *peersProvider) StartMember(c *actorcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	p.self = &actorcluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	p.membership = &membership{self: p.self, admit: p.admit,
		asked: func(addr string) { p.asked.Store(addr, struct{}{}) },
		leaving: func(id string) {
			p.left.Store(id, struct{}{})
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}}
	if err := p.membership.spawn(c.ActorSystem); err != nil {
		return err
	}
	return p.start(c)
}

// StartClient follows the members without being one (an edge-only node).
func (p *peersProvider) StartClient(c *actorcluster.Cluster) error { return p.start(c) }

func (p *peersProvider) start(c *actorcluster.Cluster) error {
	p.cluster = c
	p.suspects = newSuspects(c.ActorSystem, func() {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	})
	p.poll() // a first topology before StartMember returns
	go p.loop()
	return nil
}

func (p *peersProvider) Shutdown(bool) error {
	p.once.Do(func() { close(p.stop) })
	if p.cluster != nil {
		<-p.done
	}
	return nil
}

func (p *peersProvider) loop() {
	defer close(p.done)
	defer p.suspects.stop()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.poll()
		case <-p.wake:
			p.poll()
		}
	}
}

// poll asks every other peer at once, waits for the answers (bounded by a
// heartbeat), and publishes this member plus the peers the failure
// detector keeps (suspect.go).
func (p *peersProvider) poll() {
	now := time.Now()
	if gap, paused := p.gap.paused(now); paused {
		// This process did not run for longer than the peers wait for an
		// answer: they have dropped this member, and it rejoins at once
		// rather than serve on under its old id until a peer says so. Its
		// own silence says nothing of theirs: they get a fresh start.
		for addr := range p.heard {
			p.heard[addr] = now
		}
		if p.self != nil {
			p.dropped("this member did not run for longer than its peers wait", gap)
		}
	}
	selfAddr := ""
	if p.self != nil {
		selfAddr = p.cluster.ActorSystem.Address()
	}
	var ask []string
	for _, addr := range p.peers {
		if _, ok := p.asked.LoadAndDelete(addr); ok {
			delete(p.next, addr)
		}
		suspected := p.known[addr] != nil && p.suspects.judge(addr, p.heard[addr], now) != alive
		if addr == selfAddr || (now.Before(p.next[addr]) && !suspected) {
			continue // a suspect is asked now, whatever its backoff
		}
		ask = append(ask, addr)
	}
	answers := askMembers(p.cluster.ActorSystem, p.whoAmI(), ask, heartbeat)
	// An answer proves the peer ran when the question went (now); its
	// silence is judged as of when the answers were awaited.
	judged := time.Now()
	members := actorcluster.Members{}
	if p.self != nil {
		members = append(members, p.self)
	}
	for _, addr := range ask {
		a, ok := answers[addr]
		switch {
		case ok && a.dropped != nil:
			if p.self != nil && a.dropped.GetId() == p.self.Id {
				p.dropped("a peer has dropped this member", 0)
			}
			continue
		case ok && a.member != nil:
			m := a.member
			if _, gone := p.left.Load(m.Id); gone {
				continue // stopping: it answers until it has stopped
			}
			if p.self != nil && m.Id == p.self.Id {
				continue // this member, listed under a name rather than its bound address
			}
			if old := p.known[addr]; old == nil || old.Id != m.Id {
				p.logger.Warn("cluster peer joined", "address", addr, "member", m.Id)
			}
			p.known[addr], p.heard[addr], p.miss[addr] = m, now, 0
			p.suspects.clear(addr)
			continue
		}
		p.miss[addr]++
		p.next[addr] = now.Add(min(providerBackoff(p.miss[addr]), peerBackoffMax))
	}
	for addr, m := range p.known {
		if _, gone := p.left.Load(m.Id); gone {
			p.logger.Warn("cluster peer left", "address", addr, "member", m.Id)
			delete(p.known, addr)
			continue
		}
		switch p.suspects.judge(addr, p.heard[addr], judged) {
		case drop:
			p.logger.Warn("cluster peer lost: no answer", "address", addr, "member", m.Id, "for", judged.Sub(p.heard[addr]).Round(time.Millisecond))
		case dropUnlessAnswers:
			// Its connection was lost, or a request to it stalled, and it
			// did not answer the question asked now.
			p.logger.Warn("cluster peer lost: suspected, and it does not answer", "address", addr, "member", m.Id)
		default:
			members = append(members, m)
			continue
		}
		// Out of the topology, which blocks its id: only a restart, under
		// a new id, comes back; if it runs on, it hears so and rejoins.
		delete(p.known, addr)
		if p.membership != nil {
			p.membership.drop(m.Id)
		}
	}
	p.cluster.MemberList.UpdateClusterTopology(members)
}

// dropped tells onDropped, once: this member's id is out of its peers'
// topology.
func (p *peersProvider) dropped(why string, silent time.Duration) {
	if p.onDropped == nil {
		return
	}
	p.toldDropped.Do(func() {
		p.logger.Error("cluster: "+why+"; it rejoins under a new id", "member", p.self.Id, "silent_for", silent.Round(time.Millisecond))
		go p.onDropped()
	})
}

// whoAmI is what this member sends when it asks: itself, or an empty
// member from a client.
func (p *peersProvider) whoAmI() *actorcluster.Member {
	if p.self == nil {
		return &actorcluster.Member{}
	}
	return p.self
}

// leave tells every peer this member is stopping, and waits (briefly) for
// their acknowledgements, so they route around it before it goes.
func (p *peersProvider) leave() {
	if p.cluster == nil || p.self == nil {
		return
	}
	var futures []*actor.Future
	for _, addr := range p.peers {
		if addr != p.cluster.ActorSystem.Address() {
			futures = append(futures, p.cluster.ActorSystem.Root.RequestFuture(actor.NewPID(addr, membershipActor),
				&messages.MemberLeaving{Id: p.self.Id}, heartbeat))
		}
	}
	for _, f := range futures {
		_, _ = f.Result() // a peer that is down has nothing to forget
	}
	// The acknowledgement comes before the peer's poll has published its
	// topology without this member: give that poll its time.
	time.Sleep(heartbeat / 2)
}
