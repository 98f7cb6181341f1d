package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Certificates name what their holder is, by a DNS name under the
// cluster's domain; the cluster's CA is what makes the name true:
//
//	member.caregrid.internal         a member: hosts grains, speaks for end users
//	edge.caregrid.internal           an edge-only node: speaks for end users, hosts nothing
//	<client>.service.caregrid.internal  an internal service, the OAuth client <client>:
//	                                 acts only as itself
const (
	PeerName      = "member.caregrid.internal"
	EdgeName      = "edge.caregrid.internal"
	serviceSuffix = ".service.caregrid.internal"
)

// ServiceName is the certificate name of the internal service whose OAuth
// client id is client.
func ServiceName(client string) string { return client + serviceSuffix }

// PeerKind is what a remote sender's certificate proves it is.
type PeerKind int

const (
	// PeerLocal is this process: a message that did not come over remoting.
	PeerLocal PeerKind = iota
	PeerMember
	PeerEdge
	PeerService
)

func (k PeerKind) String() string {
	return [...]string{"local", "member", "edge", "service"}[k]
}

// Peer is the proven sender of a message.
type Peer struct {
	Kind PeerKind
	// Service is the OAuth client id a service's certificate names.
	Service string
	// Address is the network address the connection came from ("" for local).
	Address string
}

// Node reports whether the sender is a caregrid node (this process, a
// member or an edge): what may speak for end users and write the audit
// trail.
func (p Peer) Node() bool { return p.Kind != PeerService }

// Member reports whether the sender is this process or a member: what may
// make the grain-to-grain calls of a saga and a member's own sweeps.
func (p Peer) Member() bool { return p.Kind == PeerLocal || p.Kind == PeerMember }

func (p Peer) String() string {
	if p.Kind == PeerService {
		return "service:" + p.Service
	}
	return p.Kind.String()
}

// The headers under which the remoting delivers every inbound message's
// proven sender. The inbound gate writes them and drops whatever the
// sender put in the header: a message without them was sent in-process.
const (
	headerPeer        = "caregrid-peer"
	headerPeerAddress = "caregrid-peer-address"
)

// PeerOf is the proven sender of the message a grain is handling.
func PeerOf(h actor.ReadonlyMessageHeader) Peer {
	if h == nil {
		return Peer{Kind: PeerLocal}
	}
	name := h.Get(headerPeer)
	p := Peer{Address: h.Get(headerPeerAddress)}
	switch {
	case name == "":
		return Peer{Kind: PeerLocal}
	case name == "member":
		p.Kind = PeerMember
	case name == "edge":
		p.Kind = PeerEdge
	case strings.HasPrefix(name, "service:"):
		p.Kind, p.Service = PeerService, strings.TrimPrefix(name, "service:")
	default:
		// Only the gate writes the header; an unknown value is a bug, and
		// the least trusted reading is the safe one.
		p.Kind, p.Service = PeerService, ""
	}
	return p
}

// certPeer is what a verified certificate names, or an error when it names
// no role or more than one.
func certPeer(cert *x509.Certificate) (Peer, error) {
	var found []Peer
	for _, n := range cert.DNSNames {
		switch {
		case n == PeerName:
			found = append(found, Peer{Kind: PeerMember})
		case n == EdgeName:
			found = append(found, Peer{Kind: PeerEdge})
		case strings.HasSuffix(n, serviceSuffix):
			client := strings.TrimSuffix(n, serviceSuffix)
			if client == "" || strings.Contains(client, ".") {
				return Peer{}, fmt.Errorf("certificate name %q is not a service name", n)
			}
			found = append(found, Peer{Kind: PeerService, Service: client})
		}
	}
	switch len(found) {
	case 0:
		return Peer{}, fmt.Errorf("certificate names no caregrid role (%s, %s or <client>%s)", PeerName, EdgeName, serviceSuffix)
	case 1:
		return found[0], nil
	}
	return Peer{}, errors.New("certificate names more than one caregrid role")
}

// peerKey carries a stream's proven peer in its context, from the stream
// interceptor to the inbound gate.
type peerKey struct{}

func streamPeer(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// tlsPeer is the peer a stream's verified client certificate names.
func tlsPeer(ctx context.Context) (Peer, error) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, errors.New("no peer")
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Peer{}, errors.New("no verified client certificate")
	}
	p, err := certPeer(info.State.VerifiedChains[0][0])
	if err != nil {
		return Peer{}, err
	}
	if pr.Addr != nil {
		p.Address = pr.Addr.String()
	}
	return p, nil
}

// Inbound is this node's account of its remoting's inbound streams: who is
// connected, and what was dropped because its sender may not send it.
type Inbound struct {
	mu      sync.Mutex
	streams map[*grpc.ServerStream]Connection
	dropped sync.Map // "kind/type" -> *atomic.Int64
}

// Connection is one inbound remoting stream.
type Connection struct {
	Peer        string    `json:"peer"` // member, edge or service:<client>
	Address     string    `json:"address"`
	ConnectedAt time.Time `json:"connected_at"`
}

func newInbound() *Inbound { return &Inbound{streams: map[*grpc.ServerStream]Connection{}} }

// Connections lists the inbound streams, oldest first.
func (in *Inbound) Connections() []Connection {
	in.mu.Lock()
	out := make([]Connection, 0, len(in.streams))
	for _, c := range in.streams {
		out = append(out, c)
	}
	in.mu.Unlock()
	slices.SortFunc(out, func(a, b Connection) int { return a.ConnectedAt.Compare(b.ConnectedAt) })
	return out
}

// Dropped counts the messages dropped so far, by "peer kind/message type".
func (in *Inbound) Dropped() map[string]int64 {
	out := map[string]int64{}
	in.dropped.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (in *Inbound) drop(p Peer, message any) {
	key := p.Kind.String() + "/" + typeName(message)
	v, _ := in.dropped.LoadOrStore(key, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func typeName(m any) string {
	t := reflect.TypeOf(m)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "nil"
	}
	return t.String()
}

// interceptStream proves the peer of every inbound stream from its
// certificate before the remoting reads a message, keeps it in the
// stream's context for the gate, and tracks the connection.
func (in *Inbound) interceptStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	p, err := tlsPeer(ss.Context())
	if err != nil {
		return err // the handshake checked the chain; a stream without a role name is refused
	}
	key := &ss
	in.mu.Lock()
	in.streams[key] = Connection{Peer: p.String(), Address: p.Address, ConnectedAt: time.Now().UTC()}
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		delete(in.streams, key)
		in.mu.Unlock()
	}()
	return handler(srv, peerStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), peerKey{}, p)})
}

type peerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s peerStream) Context() context.Context { return s.ctx }

// gate is the remoting's inbound filter (see remote.Config.InboundGate):
// every message is delivered with its proven sender in the header, and
// whatever the sender wrote there is dropped. Nodes that are not members
// may send only what a cluster client needs: grain requests, activation
// requests, the static-peers poll, and (edges) the operators' status
// request. Lifecycle messages (Stop, PoisonPill, Watch, Terminated, ...)
// and gossip from them are dropped and counted: a service cannot stop the
// partition activator or rewrite the topology.
func (in *Inbound) gate(ctx context.Context) remote.InboundFilter {
	p, ok := streamPeer(ctx)
	if !ok {
		// Not through interceptStream: cannot happen with TLS; refuse all.
		return func(_ *actor.PID, m any, _ map[string]string) (map[string]string, bool) {
			in.drop(Peer{Kind: PeerService}, m)
			return nil, false
		}
	}
	name := p.String()
	return func(_ *actor.PID, m any, _ map[string]string) (map[string]string, bool) {
		if !allowedFrom(p.Kind, m) {
			in.drop(p, m)
			return nil, false
		}
		return map[string]string{headerPeer: name, headerPeerAddress: p.Address}, true
	}
}

func allowedFrom(k PeerKind, m any) bool {
	if k == PeerMember {
		return true
	}
	switch m.(type) {
	case *actorcluster.GrainRequest, *actorcluster.ActivationRequest, *actorcluster.Member:
		return true
	case *messages.MemberStatusRequest:
		return k == PeerEdge
	}
	return false
}
