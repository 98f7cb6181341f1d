package cluster

import (
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
)

// membershipActor is the name under which every member answers "who are
// you": its member id, address and kinds.
const membershipActor = "caregrid-membership"

// Peer-list timing. A member is in the topology while it answered within
// peerGrace: one lost poll does not drop it, since a dropped member is
// blocked for good and can only come back under a new id (a restart).
const (
	peerPoll  = 500 * time.Millisecond
	peerGrace = 3 * time.Second
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
	// suspects are peers whose connection closed (a killed process): out
	// of the topology at once, not after peerGrace.
	suspects *suspects
	// onDropped is told when this member finds it was paused longer than
	// its peers' grace: they have dropped (and blocked) its id.
	onDropped func()
	// admit, when set, is closed once this member may be asked (see
	// Config.Admit): until then it does not answer the peers' poll.
	admit    <-chan struct{}
	lastPoll time.Time     // used by poll only
	wake     chan struct{} // a poll now, not at the next tick
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
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
	self := p.self
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch msg := ctx.Message().(type) {
		case *actorcluster.Member:
			if msg.Host != "" {
				p.asked.Store(net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port))), struct{}{})
			}
			if admitted(p.admit) {
				ctx.Respond(self)
			}
		case *messages.MemberLeaving:
			p.left.Store(msg.GetId(), struct{}{})
			select {
			case p.wake <- struct{}{}:
			default:
			}
			ctx.Respond(msg)
		}
	})
	if _, err := c.ActorSystem.Root.SpawnNamed(props, membershipActor); err != nil {
		return err
	}
	return p.start(c)
}

// admitted reports whether admit (nil: admitted) is closed.
func admitted(admit <-chan struct{}) bool {
	if admit == nil {
		return true
	}
	select {
	case <-admit:
		return true
	default:
		return false
	}
}

// answerMembership makes a member that does not find its peers through
// this provider (a single node) answer "who are you" all the same, so that
// an internal service given its remoting address joins it as a client.
func answerMembership(c *actorcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	self := &actorcluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	_, err = c.ActorSystem.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actorcluster.Member); ok {
			ctx.Respond(self)
		}
	}), membershipActor)
	return err
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
	t := time.NewTicker(peerPoll)
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

// poll asks every other peer at once, waits for the answers (bounded by
// peerPoll), and publishes this member plus the peers heard from within
// peerGrace.
func (p *peersProvider) poll() {
	now := time.Now()
	if p.self != nil && !p.lastPoll.IsZero() && now.Sub(p.lastPoll) > peerGrace && p.onDropped != nil {
		// This process did not run for longer than the peers wait for an
		// answer (it was paused): they have dropped this member's id.
		p.logger.Error("cluster: this member was silent longer than its peers wait; they have dropped it, so it rejoins under a new id",
			"member", p.self.Id, "silent_for", now.Sub(p.lastPoll).Round(time.Millisecond))
		go p.onDropped()
	}
	p.lastPoll = now
	type asked struct {
		addr string
		f    *actor.Future
	}
	var futures []asked
	selfAddr := ""
	if p.self != nil {
		selfAddr = p.cluster.ActorSystem.Address()
	}
	for _, addr := range p.peers {
		if _, ok := p.asked.LoadAndDelete(addr); ok {
			delete(p.next, addr)
		}
		suspected := p.known[addr] != nil && p.suspects.suspected(addr, p.heard[addr])
		if addr == selfAddr || (now.Before(p.next[addr]) && !suspected) {
			continue // a suspect is asked now, whatever its backoff
		}
		futures = append(futures, asked{addr, p.cluster.ActorSystem.Root.RequestFuture(actor.NewPID(addr, membershipActor), p.whoAmI(), peerPoll)})
	}
	members := actorcluster.Members{}
	if p.self != nil {
		members = append(members, p.self)
	}
	for _, a := range futures {
		res, err := a.f.Result()
		if m, ok := res.(*actorcluster.Member); ok && err == nil {
			if _, gone := p.left.Load(m.Id); gone {
				continue // stopping: it answers until it has stopped
			}
			if p.self != nil && m.Id == p.self.Id {
				continue // this member, listed under a name rather than its bound address
			}
			if old := p.known[a.addr]; old == nil || old.Id != m.Id {
				p.logger.Warn("cluster peer joined", "address", a.addr, "member", m.Id)
			}
			p.known[a.addr], p.heard[a.addr], p.miss[a.addr] = m, now, 0
			continue
		}
		p.miss[a.addr]++
		p.next[a.addr] = now.Add(min(providerBackoff(p.miss[a.addr]), peerBackoffMax))
	}
	for addr, m := range p.known {
		if _, gone := p.left.Load(m.Id); gone {
			p.logger.Warn("cluster peer left", "address", addr, "member", m.Id)
			delete(p.known, addr)
			continue
		}
		if p.suspects.suspected(addr, p.heard[addr]) {
			// Its connection was lost after its last answer, and it did
			// not answer this poll: out of the topology now, not after
			// peerGrace (its id is blocked then: only a restart, under a
			// new id, comes back).
			p.logger.Warn("cluster peer lost: its connection was lost and it does not answer", "address", addr, "member", m.Id)
			delete(p.known, addr)
			continue
		}
		if now.Sub(p.heard[addr]) < peerGrace {
			members = append(members, m)
			continue
		}
		p.logger.Warn("cluster peer lost: no answer", "address", addr, "member", m.Id, "for", now.Sub(p.heard[addr]).Round(time.Millisecond))
		delete(p.known, addr)
	}
	p.cluster.MemberList.UpdateClusterTopology(members)
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
				&messages.MemberLeaving{Id: p.self.Id}, peerPoll))
		}
	}
	for _, f := range futures {
		_, _ = f.Result() // a peer that is down has nothing to forget
	}
	// The acknowledgement comes before the peer's poll has published its
	// topology without this member: give that poll its time.
	time.Sleep(peerPoll / 2)
}
