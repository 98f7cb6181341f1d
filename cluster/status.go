package cluster

import (
	"net"
	"slices"
	"strconv"
	"strings"
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

func (n *Node) status(started *timestamppb.Timestamp) *messages.MemberStatus {
	st := &messages.MemberStatus{Id: n.System.ID, Address: n.Address(), Roles: []string{"member"},
		Activations: map[string]int64{}, StartedAt: started}
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
	ID          string           `json:"id"`
	Address     string           `json:"address"`
	Roles       []string         `json:"roles"`
	Status      string           `json:"status"` // up, or unreachable (in the topology, not answering)
	Activations map[string]int64 `json:"activations,omitempty"`
	StartedAt   *time.Time       `json:"started_at,omitempty"`
	// Connections are the remoting streams connected to the member, named
	// by their peers' certificates (member, edge, service:<client>).
	Connections []Connection `json:"connections,omitempty"`
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
				mv.Status, mv.Roles, mv.Activations, mv.StartedAt = "up", st.GetRoles(), st.GetActivations(), &at
				for _, c := range st.GetConnections() {
					mv.Connections = append(mv.Connections, Connection{Peer: c.GetPeer(), Address: c.GetAddress(), ConnectedAt: c.GetConnectedAt().AsTime()})
				}
			}
		}
		view.Members = append(view.Members, mv)
	}
	slices.SortFunc(view.Members, func(a, b MemberView) int { return strings.Compare(a.Address, b.Address) })
	return view
}
