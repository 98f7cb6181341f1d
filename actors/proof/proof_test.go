package proof

import (
	"errors"
	"testing"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// tokens is a verifier that knows two tokens, and fails on "down".
func tokens(tok string) (Principal, error) {
	switch tok {
	case "doctor-token":
		return Principal{Subject: "doctor-1", Role: messages.Role_ROLE_DOCTOR, Client: "portal"}, nil
	case "pharmacy-token":
		return Principal{Subject: "pharmacy-account", Role: messages.Role_ROLE_SERVICE, Client: "pharmacy"}, nil
	case "down":
		return Principal{}, errors.New("session store unreachable")
	}
	return Principal{}, ErrInvalidToken
}

func request(t *testing.T, method string, m proto.Message) *actorcluster.GrainRequest {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sd := messages.File_services_proto.Services().ByName("Patient")
	return &actorcluster.GrainRequest{MethodIndex: int32(sd.Methods().ByName(protoreflectName(method)).Index()), MessageData: data}
}

func callerOf(t *testing.T, req *actorcluster.GrainRequest) *messages.Caller {
	t.Helper()
	var got messages.GetPatientRequest
	if err := proto.Unmarshal(req.MessageData, &got); err != nil {
		t.Fatal(err)
	}
	return got.GetCaller()
}

func TestProveTakesTheCallerFromTheTokenAndTheRelayFromThePeer(t *testing.T) {
	c := NewChecker(nil)
	c.SetVerifier(tokens)
	methods := Policy{Service: "Patient", MemberOnly: []string{"Reserve", "Settle", "AdmitPrescription"}}.methods()
	claimed := &messages.Caller{Subject: "patient-9", Role: messages.Role_ROLE_PATIENT, Client: "other", RequestId: "r-1",
		SourceAddress: "10.0.0.9", PurposeOfUse: "TREAT", BreakGlassReason: "because", Token: "doctor-token"}
	get := request(t, "Get", &messages.GetPatientRequest{Caller: claimed})

	// Relayed by a member or an edge: who from the token, the rest as relayed.
	for _, peer := range []cluster.Peer{{Kind: cluster.PeerLocal}, {Kind: cluster.PeerMember}, {Kind: cluster.PeerEdge}} {
		out, _, refusal := c.prove(methods, false, peer, get)
		if refusal != nil {
			t.Fatalf("%s: %v", peer, refusal)
		}
		got := callerOf(t, out)
		if got.Subject != "doctor-1" || got.Role != messages.Role_ROLE_DOCTOR || got.Client != "portal" ||
			got.RequestId != "r-1" || got.SourceAddress != "10.0.0.9" || got.BreakGlassReason != "because" {
			t.Errorf("%s: proven caller %v", peer, got)
		}
	}
	// A service with its own token: itself, from its connection's address,
	// under a request id made here.
	pharmacy := cluster.Peer{Kind: cluster.PeerService, Service: "pharmacy", Address: "127.0.0.1:5000"}
	own := proto.Clone(claimed).(*messages.Caller)
	own.Token = "pharmacy-token"
	out, _, refusal := c.prove(methods, false, pharmacy, request(t, "Get", &messages.GetPatientRequest{Caller: own}))
	if refusal != nil {
		t.Fatal(refusal)
	}
	if got := callerOf(t, out); got.Subject != "pharmacy-account" || got.Role != messages.Role_ROLE_SERVICE || got.Client != "pharmacy" ||
		got.SourceAddress != "127.0.0.1:5000" || got.RequestId == "r-1" || got.RequestId == "" || got.BreakGlassReason != "" {
		t.Errorf("service's proven caller %v", got)
	}

	// A second field 1 (protobuf merges them) cannot smuggle a claim past
	// the rewrite: the grain sees one Caller, the proven one.
	extra, _ := proto.Marshal(&messages.Caller{Subject: "patient-9", Role: messages.Role_ROLE_PATIENT})
	twice := &actorcluster.GrainRequest{MethodIndex: get.MethodIndex,
		MessageData: protowire.AppendBytes(protowire.AppendTag(append([]byte{}, get.MessageData...), 1, protowire.BytesType), extra)}
	out, _, refusal = c.prove(methods, false, cluster.Peer{Kind: cluster.PeerMember}, twice)
	if refusal != nil {
		t.Fatal(refusal)
	}
	if got := callerOf(t, out); got.Subject != "doctor-1" || got.Role != messages.Role_ROLE_DOCTOR {
		t.Errorf("with a second Caller appended: %v", got)
	}
}

func TestProveRefuses(t *testing.T) {
	c := NewChecker(nil)
	c.SetVerifier(tokens)
	methods := Policy{Service: "Patient", MemberOnly: []string{"Reserve", "Settle", "AdmitPrescription"}}.methods()
	auditMethods := Policy{Service: "Audit", NodeOnly: true}.methods()
	member, edge := cluster.Peer{Kind: cluster.PeerMember}, cluster.Peer{Kind: cluster.PeerEdge}
	pharmacy := cluster.Peer{Kind: cluster.PeerService, Service: "pharmacy"}
	get := func(token string) *actorcluster.GrainRequest {
		return request(t, "Get", &messages.GetPatientRequest{Caller: &messages.Caller{Subject: "x", Role: messages.Role_ROLE_ADMIN, Token: token}})
	}
	settle := request(t, "Settle", &messages.SettleRequest{AppointmentId: "a"})
	for _, tc := range []struct {
		name     string
		methods  []method
		nodeOnly bool
		peer     cluster.Peer
		req      *actorcluster.GrainRequest
		reason   string
		unproven bool
	}{
		{"no token", methods, false, member, get(""), reasonNoToken, true},
		{"a forged token", methods, false, member, get("forged"), reasonInvalidToken, true},
		{"another client's token from a service", methods, false, pharmacy, get("doctor-token"), reasonNotItself, true},
		{"a saga step from an edge", methods, false, edge, settle, reasonMemberOnly, true},
		{"a saga step from a service", methods, false, pharmacy, settle, reasonMemberOnly, true},
		{"an audit append from a service", auditMethods, true, pharmacy, &actorcluster.GrainRequest{}, reasonMemberOnly, true},
		{"an unknown method", methods, false, member, &actorcluster.GrainRequest{MethodIndex: 99}, reasonUnknownMethod, true},
		{"a malformed request", methods, false, member, &actorcluster.GrainRequest{MessageData: []byte{0x0a, 0xff}}, reasonMalformed, true},
		{"a verifier that cannot decide", methods, false, member, get("down"), "", false},
	} {
		out, reason, refusal := c.prove(tc.methods, tc.nodeOnly, tc.peer, tc.req)
		if out != nil || refusal == nil || reason != tc.reason || messages.IsUnproven(refusal) != tc.unproven {
			t.Errorf("%s: request %v, reason %q, refusal %v; want refused (%q)", tc.name, out, reason, refusal, tc.reason)
		}
	}
	// Allowed as they are: a saga step from a member, an audit append from an edge.
	if out, _, refusal := c.prove(methods, false, member, settle); refusal != nil || out != settle {
		t.Errorf("a saga step from a member: %v", refusal)
	}
	if _, _, refusal := c.prove(auditMethods, true, edge, &actorcluster.GrainRequest{}); refusal != nil {
		t.Errorf("an audit append from an edge: %v", refusal)
	}
	// A service's text is checked (it skips the edge): a NUL anywhere in
	// its request is refused, as the edge refuses one from a person.
	dispense := func(quantity string) *actorcluster.GrainRequest {
		data, _ := proto.Marshal(&messages.UpdatePatientRequest{Caller: &messages.Caller{Token: "pharmacy-token"},
			Patient: &messages.PatientRecord{Allergies: []*messages.Allergy{{Substance: quantity}}}})
		sd := messages.File_services_proto.Services().ByName("Patient")
		return &actorcluster.GrainRequest{MethodIndex: int32(sd.Methods().ByName("Update").Index()), MessageData: data}
	}
	if _, _, refusal := c.prove(methods, false, pharmacy, dispense("penicillin\x00")); refusal == nil ||
		refusal.Metadata["field:patient.allergies[0].substance"] == "" {
		t.Errorf("a NUL from a service: %v", refusal)
	}
	if _, _, refusal := c.prove(methods, false, pharmacy, dispense("penicillin\nrash")); refusal != nil {
		t.Errorf("a line break from a service: %v", refusal)
	}
	// Without a verifier, or without a checker at all, nothing passes.
	if _, _, refusal := NewChecker(nil).prove(methods, false, member, get("doctor-token")); refusal == nil {
		t.Error("a checker without a verifier let a request through")
	}
	var none *Checker
	if _, _, refusal := none.prove(methods, false, cluster.Peer{Kind: cluster.PeerLocal}, settle); refusal == nil {
		t.Error("a nil checker let a request through")
	}
}

func TestEveryGrainMethodCarriesACallerOrIsMemberOnly(t *testing.T) {
	// methods panics on a method that carries no Caller in field 1 and is
	// not member-only: a new RPC must choose.
	for _, p := range []Policy{
		{Service: "Patient", MemberOnly: []string{"Reserve", "Settle", "AdmitPrescription"}},
		{Service: "Calendar"}, {Service: "Clinic"}, {Service: "Prescription", MemberOnly: []string{"Expire"}},
		{Service: "Audit", NodeOnly: true},
	} {
		p.methods()
	}
	defer func() {
		if recover() == nil {
			t.Error("a method without a Caller passed as an ordinary one")
		}
	}()
	Policy{Service: "Patient"}.methods() // Settle has no Caller
}

func protoreflectName(s string) protoreflect.Name { return protoreflect.Name(s) }
