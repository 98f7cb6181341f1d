package cluster

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
)

// membershipActor is the name under which every member answers "who are
// you" (the asker sends itself, an *actorcluster.Member): the heartbeat of
// both providers.
const membershipActor = "caregrid-membership"

// membership is what a member's membership actor answers from.
type membership struct {
	self *actorcluster.Member
	// admit, when set, is closed once this member may be asked (see
	// Config.Admit): until then it does not answer.
	admit <-chan struct{}
	// dropped holds the ids this member took out of its topology: a member
	// asking under one of them hears MemberDropped, and rejoins.
	dropped sync.Map
	// asked (may be nil) hears the address of each member that asks.
	asked func(address string)
	// leaving (may be nil) hears the id of a member that says it stops.
	leaving func(id string)
}

func (m *membership) spawn(system *actor.ActorSystem) error {
	_, err := system.Root.SpawnNamed(actor.PropsFromFunc(m.receive), membershipActor)
	return err
}

func (m *membership) receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actorcluster.Member:
		if msg.Host != "" && m.asked != nil {
			m.asked(net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port))))
		}
		if !admitted(m.admit) {
			return
		}
		if _, gone := m.dropped.Load(msg.Id); gone && msg.Id != "" {
			ctx.Respond(&messages.MemberDropped{Id: msg.Id})
			return
		}
		ctx.Respond(m.self)
	case *messages.MemberLeaving:
		if m.leaving != nil {
			m.leaving(msg.GetId())
		}
		ctx.Respond(msg)
	}
}

// drop records that id is out of this member's topology for good.
func (m *membership) drop(id string) { m.dropped.Store(id, struct{}{}) }

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
// a provider of its own (a single node) answer "who are you" all the same,
// so that an internal service given its remoting address joins it as a
// client.
func answerMembership(c *actorcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	m := &membership{self: &actorcluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}}
	return m.spawn(c.ActorSystem)
}

// heartbeatAnswer is one member's answer to a heartbeat.
type heartbeatAnswer struct {
	member  *actorcluster.Member    // it answered, as itself
	dropped *messages.MemberDropped // it has dropped the asker
}

// askMembers sends a heartbeat (who, the asker) to every address at once
// and waits for the answers, each bounded by timeout.
func askMembers(system *actor.ActorSystem, who *actorcluster.Member, addresses []string, timeout time.Duration) map[string]heartbeatAnswer {
	futures := make(map[string]*actor.Future, len(addresses))
	for _, addr := range addresses {
		futures[addr] = system.Root.RequestFuture(actor.NewPID(addr, membershipActor), who, timeout)
	}
	answers := make(map[string]heartbeatAnswer, len(addresses))
	for addr, f := range futures {
		res, err := f.Result()
		if err != nil {
			continue
		}
		switch r := res.(type) {
		case *actorcluster.Member:
			answers[addr] = heartbeatAnswer{member: r}
		case *messages.MemberDropped:
			answers[addr] = heartbeatAnswer{dropped: r}
		}
	}
	return answers
}
