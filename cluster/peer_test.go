package cluster

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
)

func TestCertificatesNameOneRole(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string // "" for refused
	}{
		{[]string{PeerName, "localhost"}, "member"},
		{[]string{EdgeName}, "edge"},
		{[]string{ServiceName("pharmacy-1")}, "service:pharmacy-1"},
		{[]string{"localhost"}, ""},
		{[]string{"a.b" + serviceSuffix}, ""},
		{[]string{serviceSuffix}, ""},
		{[]string{PeerName, ServiceName("pharmacy-1")}, ""},
	} {
		p, err := certPeer(&x509.Certificate{DNSNames: tc.names})
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != tc.want {
			t.Errorf("%v: %q (%v), want %q", tc.names, got, err, tc.want)
		}
	}
}

func TestOnlyMembersSendLifecycleMessages(t *testing.T) {
	for _, tc := range []struct {
		m                     any
		member, edge, service bool
	}{
		{&actorcluster.GrainRequest{}, true, true, true},
		{&actorcluster.ActivationRequest{}, true, true, true},
		{&actorcluster.Member{}, true, true, true},
		{&messages.MemberStatusRequest{}, true, true, false},
		{&actor.PoisonPill{}, true, false, false},
		{&actor.Stop{}, true, false, false},
		{&actor.Watch{}, true, false, false},
		{&actor.Terminated{}, true, false, false},
		{&actorcluster.GossipRequest{}, true, false, false},
		{&messages.MemberLeaving{}, true, false, false},
		{&messages.MemberDropped{}, true, false, false},
	} {
		for kind, want := range map[PeerKind]bool{PeerMember: tc.member, PeerEdge: tc.edge, PeerService: tc.service} {
			if got := allowedFrom(kind, tc.m); got != want {
				t.Errorf("%T from a %s: allowed %v, want %v", tc.m, kind, got, want)
			}
		}
	}
}

func TestTheGateStampsTheProvenPeerOverTheSendersHeader(t *testing.T) {
	in := newInbound()
	svc := Peer{Kind: PeerService, Service: "pharmacy-1", Address: "127.0.0.1:9"}
	filter := in.gate(contextWithPeer(svc))
	h, ok := filter(nil, &actorcluster.GrainRequest{}, map[string]string{headerPeer: "member"})
	if !ok || PeerOf((&actor.MessageEnvelope{Header: h}).Header) != svc {
		t.Fatalf("delivered %v with %v; want the service's own name", ok, h)
	}
	if _, ok := filter(nil, &actor.PoisonPill{}, nil); ok {
		t.Fatal("a PoisonPill from a service was delivered")
	}
	if got := in.Dropped()["service/actor.PoisonPill"]; got != 1 {
		t.Fatalf("dropped = %v", in.Dropped())
	}
	if PeerOf(nil).Kind != PeerLocal || PeerOf(actor.EmptyMessageHeader).Kind != PeerLocal {
		t.Fatal("a message without the header is not local")
	}
}

func contextWithPeer(p Peer) context.Context {
	return context.WithValue(context.Background(), peerKey{}, p)
}
