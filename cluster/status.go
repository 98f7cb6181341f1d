package cluster

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// statusActor is the name under which every member answers
// MemberStatusRequest with its own account of itself.
const statusActor = "caregrid-status"

// statusTimeout bounds one member's answer in View: an operator's page
// must come back even when a member hangs.
const statusTimeout = time.Second

// spawnStatus starts this member's status actor.
func (n *Node) spawnStatus() error {
	started := timestamppb.Now()
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*messages.MemberStatusRequest); ok {
			ctx.Respond(n.status(started))
		}
	})
	_, err := n.System.Root.SpawnNamed(props, statusActor)
	return err
}

// SetStats sets where this member's status takes its figures from (the
// node's metrics: request and error rates, latency, lags, queues).
func (n *Node) SetStats(f func() map[string]float64) { n.stats.Store(&f) }

func (n *Node) status(started *timestamppb.Timestamp) *messages.MemberStatus {
	st := &messages.MemberStatus{Id: n.System.ID, Address: n.Address(), Roles: []string{"member"},
		Activations: map[string]int64{}, StartedAt: started}
	if f := n.stats.Load(); f != nil {
		st.Stats = (*f)()
	}
	for _, kind := range n.Cluster.GetClusterKinds() {
		st.Activations[kind] = int64(n.Cluster.GetClusterKind(kind).Count())
	}
	for _, c := range n.Inbound.Connections() {
		st.Connections = append(st.Connections, &messages.RemotingConnection{Peer: c.Peer, Address: c.Address, ConnectedAt: timestamppb.New(c.ConnectedAt)})
	}
	return st
}

// MemberView is one member as this node sees it.
type MemberView struct {
	ID      string   `json:"id"`
	Address string   `json:"address"`
	Roles   []string `json:"roles"`
	// Status: up; unreachable (in the topology, not answering its status
	// request within statusTimeout); or down (gone from the topology, and
	// no member on its address since: a member killed or stopped).
	Status      string           `json:"status"`
	Activations map[string]int64 `json:"activations,omitempty"`
	StartedAt   *time.Time       `json:"started_at,omitempty"`
	// Connections are the remoting streams connected to the member, named
	// by their peers' certificates (member, edge, service:<client>).
	Connections []Connection `json:"connections,omitempty"`
	// Stats are the member's figures over its last minute (MemberStatus.stats).
	Stats map[string]float64 `json:"stats,omitempty"`
	// LastSeen: when this node last saw a down member in its topology.
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// departures remembers the members this node saw, by address, so that a
// member that dies shows as down (rather than vanishing from the view)
// until a member is on its address again or departedFor has passed.
type departures struct {
	mu   sync.Mutex
	last map[string]MemberView // by address: the latest view of its member
	at   map[string]time.Time  // when it was last in the topology
}

// departedFor is how long a member gone from the topology stays in the view.
const departedFor = 30 * time.Minute

// merge records the members in the topology now and returns the view with
// the departed ones added as down.
func (d *departures) merge(members []MemberView, now time.Time) []MemberView {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last, d.at = map[string]MemberView{}, map[string]time.Time{}
	}
	present := map[string]bool{}
	for _, m := range members {
		present[m.Address] = true
		d.last[m.Address], d.at[m.Address] = m, now
	}
	for addr, m := range d.last {
		if present[addr] {
			continue
		}
		seen := d.at[addr]
		if now.Sub(seen) > departedFor {
			delete(d.last, addr)
			delete(d.at, addr)
			continue
		}
		members = append(members, MemberView{ID: m.ID, Address: addr, Roles: m.Roles, Status: "down", StartedAt: m.StartedAt, LastSeen: &seen})
	}
	return members
}

// View is this node's view of the cluster.
type View struct {
	Self    string       `json:"self"`
	Members []MemberView `json:"members"`
}

// View asks every member in this node's topology for its status, at once,
// each bounded by statusTimeout.
func (n *Node) View() View {
	members := n.Cluster.MemberList.Members().Members()
	futures := make([]*actor.Future, len(members))
	for i, m := range members {
		addr := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
		futures[i] = n.System.Root.RequestFuture(actor.NewPID(addr, statusActor), &messages.MemberStatusRequest{}, statusTimeout)
	}
	view := View{Self: n.System.ID}
	for i, m := range members {
		mv := MemberView{ID: m.Id, Address: net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))), Roles: []string{"member"}, Status: "unreachable"}
		if res, err := futures[i].Result(); err == nil {
			if st, ok := res.(*messages.MemberStatus); ok && st.GetId() == m.Id {
				at := st.GetStartedAt().AsTime()
				mv.Status, mv.Roles, mv.Activations, mv.StartedAt, mv.Stats = "up", st.GetRoles(), st.GetActivations(), &at, st.GetStats()
				for _, c := range st.GetConnections() {
					mv.Connections = append(mv.Connections, Connection{Peer: c.GetPeer(), Address: c.GetAddress(), ConnectedAt: c.GetConnectedAt().AsTime()})
				}
			}
		}
		view.Members = append(view.Members, mv)
	}
	view.Members = n.seen.merge(view.Members, time.Now())
	slices.SortFunc(view.Members, func(a, b MemberView) int { return strings.Compare(a.Address, b.Address) })
	return view
}
