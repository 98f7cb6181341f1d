// Package proof is where a grain learns who is calling it. mTLS says who
// may connect to the remoting, not whom a message speaks for, so no grain
// believes the Caller a request carries: every grain kind receives its
// requests through Checker.Middleware, which replaces the Caller with what
// was proven before the grain's own code, and so any access decision or
// audit row, sees it.
//
// What proves what:
//
//   - The sender of a message is proven by the remoting (cluster.PeerOf):
//     this process, a member, an edge or a service, from the certificate
//     of the stream it came on.
//   - The end user or service a request speaks for is proven by their own
//     access token, which travels in Caller.token and is verified here
//     with the edge's verifier (signature, issuer, audience, expiry, and
//     session revocation, each cached). Subject, role, client and session
//     come from the token, never from the message.
//   - Request id, source address, purpose of use and a break-the-glass
//     reason are the word of the node that relayed the request (a member or
//     an edge: caregrid's own code). A service's word is not taken: its
//     source address is its connection's, its request id is made here, its
//     purpose of use follows from its role (access.PurposeOf); its own
//     request id is kept only as the client's (client_request_id).
//   - A service may act only as itself: its token must be its own (the
//     token's client is the client its certificate names).
//   - The calls inside a saga (a calendar asking a patient to reserve time,
//     a prescription asking its patient to admit it) and a member's own
//     sweeps carry a member's proof: the sender is this process or a
//     member. Methods listed as member-only take no other sender, and take
//     the Caller a member relays as it is (it was proven where the saga
//     began).
package proof

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/internal/tracing"
	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Principal is who a verified access token says its bearer is.
type Principal struct {
	Subject string
	Role    messages.Role
	Client  string
	Session string
}

// ErrInvalidToken is what a TokenVerifier returns for a token that does not
// verify (malformed, forged, expired, revoked); any other error means the
// verifier could not decide (its store is down) and the call may be retried.
var ErrInvalidToken = errors.New("proof: invalid token")

// TokenVerifier checks an access token.
type TokenVerifier func(token string) (Principal, error)

// Checker proves the callers of one process's grains.
type Checker struct {
	verifier atomic.Pointer[TokenVerifier]
	// installed is closed by the first SetVerifier.
	installed chan struct{}
	once      sync.Once
	logger    *slog.Logger

	refused sync.Map // reason -> *atomic.Int64
}

// NewChecker returns a checker without a verifier: a node's token verifier
// is built after its grain kinds are registered, and after it has joined
// the cluster, so requests may reach its grains first. Until SetVerifier,
// a request that needs a token waits for it (verifierWait at most), then
// is refused as unavailable (retryable).
func NewChecker(logger *slog.Logger) *Checker {
	if logger == nil {
		logger = slog.Default()
	}
	return &Checker{logger: logger, installed: make(chan struct{})}
}

// verifierWait bounds how long a request waits for a starting node's token
// verifier (a few hundred milliseconds after the join, measured).
const verifierWait = 3 * time.Second

// SetVerifier installs the token verifier.
func (c *Checker) SetVerifier(v TokenVerifier) {
	c.verifier.Store(&v)
	c.once.Do(func() { close(c.installed) })
}

// awaitVerifier is the verifier, waited for while the node starts.
func (c *Checker) awaitVerifier() *TokenVerifier {
	if vp := c.verifier.Load(); vp != nil || c.installed == nil {
		return vp
	}
	select {
	case <-c.installed:
	case <-time.After(verifierWait):
	}
	return c.verifier.Load()
}

// Refused counts the requests refused so far, by reason.
func (c *Checker) Refused() map[string]int64 {
	out := map[string]int64{}
	c.refused.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// Refusal reasons, as counted.
const (
	reasonNoToken       = "no_token"
	reasonInvalidToken  = "invalid_token"
	reasonNotItself     = "service_not_itself"
	reasonMemberOnly    = "member_only"
	reasonMalformed     = "malformed"
	reasonNoVerifier    = "verifier_unavailable"
	reasonUnknownMethod = "unknown_method"
)

func (c *Checker) refuse(reason string) {
	v, _ := c.refused.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Policy is how one grain kind's methods are proven.
type Policy struct {
	// Service is the grain service's name in messages/services.proto.
	Service string
	// MemberOnly names the methods only this process or a member may call
	// (saga steps, sweeps); their Caller is taken as the member relays it.
	MemberOnly []string
	// NodeOnly is for a kind whose every method only caregrid's own nodes
	// (this process, members, edges) may call and which carries no Caller
	// of its own (the audit trail: its events hold callers that grains have
	// already proven).
	NodeOnly bool
}

// method is what the middleware knows of one method, by its index.
type method struct {
	name       string
	input      protoreflect.FullName // the request's message type
	memberOnly bool
	// caller is true when the request's field 1 is its Caller.
	caller bool
}

func (p Policy) methods() []method {
	sd := messages.File_services_proto.Services().ByName(protoreflect.Name(p.Service))
	if sd == nil {
		panic("proof: no service " + p.Service + " in services.proto")
	}
	only := map[string]bool{}
	for _, m := range p.MemberOnly {
		if sd.Methods().ByName(protoreflect.Name(m)) == nil {
			panic("proof: no method " + p.Service + "." + m)
		}
		only[m] = true
	}
	out := make([]method, sd.Methods().Len())
	for i := range out {
		md := sd.Methods().Get(i)
		f := md.Input().Fields().ByNumber(1)
		out[i] = method{name: string(md.Name()), input: md.Input().FullName(), memberOnly: only[string(md.Name())],
			caller: f != nil && f.Message() != nil && f.Message().FullName() == "caregrid.v1.Caller"}
		if !out[i].caller && !out[i].memberOnly && !p.NodeOnly {
			panic("proof: " + p.Service + "." + out[i].name + " carries no Caller in field 1 and is not member-only")
		}
	}
	return out
}

// Middleware is the receiver middleware every activation of the policy's
// kind is built with (actor.WithReceiverMiddleware): it proves each grain
// request's caller, and either hands the grain the request with the proven
// Caller or answers UNPROVEN itself. A nil Checker refuses everything.
func (c *Checker) Middleware(p Policy) actor.ReceiverMiddleware {
	methods := p.methods()
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
			req, ok := env.Message.(*actorcluster.GrainRequest)
			if !ok {
				next(ctx, env)
				return
			}
			var traceparent string
			proven, reason, err := c.proveCaller(methods, p.NodeOnly, cluster.PeerOf(env.Header), req, &traceparent)
			if err != nil {
				if reason != "" {
					c.refuse(reason)
				}
				if env.Sender != nil {
					ctx.ActorSystem().Root.Send(env.Sender, err)
				}
				return
			}
			if proven != req {
				env = &actor.MessageEnvelope{Header: env.Header, Message: proven, Sender: env.Sender}
			}
			if traceparent == "" {
				next(ctx, env)
				return
			}
			// The request's span, child of the caller's; the grain's store
			// calls start from it (tracing.Background).
			sctx, span := tracing.Tracer().Start(tracing.FromTraceparent(context.Background(), traceparent),
				p.Service+"."+methods[req.MethodIndex].name, trace.WithSpanKind(trace.SpanKindServer))
			self := ctx.Self().String()
			tracing.Enter(self, sctx)
			defer func() {
				tracing.Leave(self)
				span.End()
			}()
			next(ctx, env)
		}
	}
}

// prove returns the request to hand the grain (req itself when nothing
// changes), or the reply that refuses it and the reason counted.
func (c *Checker) prove(methods []method, nodeOnly bool, peer cluster.Peer, req *actorcluster.GrainRequest) (*actorcluster.GrainRequest, string, *actorcluster.GrainErrorResponse) {
	var traceparent string
	return c.proveCaller(methods, nodeOnly, peer, req, &traceparent)
}

// proveCaller proves the request's caller; traceparent receives the trace
// context the proven request carries.
func (c *Checker) proveCaller(methods []method, nodeOnly bool, peer cluster.Peer, req *actorcluster.GrainRequest, traceparent *string) (*actorcluster.GrainRequest, string, *actorcluster.GrainErrorResponse) {
	if c == nil {
		return nil, reasonNoVerifier, messages.ErrUnproven("this member cannot verify callers")
	}
	if int(req.MethodIndex) < 0 || int(req.MethodIndex) >= len(methods) {
		return nil, reasonUnknownMethod, messages.ErrUnproven("unknown method")
	}
	m := methods[req.MethodIndex]
	switch {
	case nodeOnly:
		if !peer.Node() {
			return nil, reasonMemberOnly, messages.ErrUnproven("%s is for caregrid's own nodes, not a %s", m.name, peer)
		}
		return req, "", nil
	case m.memberOnly:
		if !peer.Member() {
			return nil, reasonMemberOnly, messages.ErrUnproven("%s is a step inside a member, not for a %s", m.name, peer)
		}
		return req, "", nil
	}
	claimed, rest, err := splitCaller(req.MessageData)
	if err != nil {
		return nil, reasonMalformed, messages.ErrUnproven("malformed request")
	}
	if claimed.GetToken() == "" {
		return nil, reasonNoToken, messages.ErrUnproven("the request carries no access token for its caller")
	}
	vp := c.awaitVerifier()
	if vp == nil {
		return nil, reasonNoVerifier, messages.ErrStoreUnavailable("this member cannot verify tokens yet")
	}
	pr, err := (*vp)(claimed.GetToken())
	if errors.Is(err, ErrInvalidToken) {
		return nil, reasonInvalidToken, messages.ErrUnproven("the access token is not valid")
	}
	if err != nil {
		c.logger.Warn("proof: token verification failed", "error", err)
		return nil, "", messages.ErrStoreUnavailable("the access token could not be checked; retry")
	}
	proven := &messages.Caller{Subject: pr.Subject, Role: pr.Role, Client: pr.Client, Token: claimed.GetToken(),
		Traceparent: boundedID(claimed.GetTraceparent())}
	if peer.Kind == cluster.PeerService {
		// A service acts only as itself, and its own word about where the
		// request came from is not taken.
		if pr.Client == "" || pr.Client != peer.Service {
			return nil, reasonNotItself, messages.ErrUnproven("a service may act only as itself")
		}
		// Nor is its text taken unchecked: the edge checks what people
		// send, and a service's request skips the edge.
		if field := controlCharacterIn(m.input, req.MessageData); field != "" {
			return nil, reasonMalformed, messages.ErrInvalidArgument("%s contains a control character", field).
				WithMetadata(map[string]string{"field:" + field: "must not contain control characters"})
		}
		proven.RequestId = uuid.NewString()
		proven.ClientRequestId = boundedID(claimed.GetClientRequestId())
		proven.SourceAddress = peer.Address
		proven.PurposeOfUse = access.PurposeOf(pr.Role)
	} else {
		proven.RequestId = claimed.GetRequestId()
		proven.ClientRequestId = claimed.GetClientRequestId()
		proven.SourceAddress = claimed.GetSourceAddress()
		proven.PurposeOfUse = claimed.GetPurposeOfUse()
		proven.BreakGlassReason = claimed.GetBreakGlassReason()
	}
	data, err := joinCaller(proven, rest)
	if err != nil {
		return nil, reasonMalformed, messages.ErrUnproven("malformed request")
	}
	*traceparent = proven.Traceparent
	return &actorcluster.GrainRequest{MethodIndex: req.MethodIndex, MessageData: data, MessageTypeName: req.MessageTypeName}, "", nil
}

// splitCaller takes every field-1 occurrence out of a serialized request
// (protobuf merges repeated occurrences of a message field, so all of them
// make the Caller the grain would see) and returns the Caller they make and
// the rest of the message.
func splitCaller(b []byte) (*messages.Caller, []byte, error) {
	var caller []byte
	rest := make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, nil, protowire.ParseError(m)
		}
		if num == 1 {
			if typ != protowire.BytesType {
				return nil, nil, errors.New("field 1 is not a message")
			}
			v, _ := protowire.ConsumeBytes(b[n:])
			caller = append(caller, v...) // concatenated encodings merge
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	c := &messages.Caller{}
	if err := proto.Unmarshal(caller, c); err != nil {
		return nil, nil, err
	}
	return c, rest, nil
}

// joinCaller is the request with c as its only field 1.
func joinCaller(c *messages.Caller, rest []byte) ([]byte, error) {
	enc, err := proto.Marshal(c)
	if err != nil {
		return nil, err
	}
	out := protowire.AppendTag(make([]byte, 0, len(enc)+len(rest)+8), 1, protowire.BytesType)
	out = protowire.AppendBytes(out, enc)
	return append(out, rest...), nil
}

// boundedID keeps a client's own request id if it is short printable ASCII.
func boundedID(s string) string {
	if len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return ""
	}
	return s
}

// controlCharacterIn names the first string field of a request that holds
// a NUL or another control character other than tab and line breaks ("":
// none). Invalid UTF-8 never gets this far: proto3 strings are checked
// when the request is decoded.
func controlCharacterIn(input protoreflect.FullName, data []byte) string {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(input)
	if err != nil {
		return string(input) // every request type is registered: a bug, refused
	}
	m := mt.New()
	if err := proto.Unmarshal(data, m.Interface()); err != nil {
		return "(request)"
	}
	return controlIn(m, "")
}

func controlIn(m protoreflect.Message, prefix string) (found string) {
	bad := func(s string) bool {
		return strings.ContainsFunc(s, func(r rune) bool { return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f })
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && found == ""; i++ {
				switch fd.Kind() {
				case protoreflect.StringKind:
					if bad(l.Get(i).String()) {
						found = fmt.Sprintf("%s[%d]", name, i)
					}
				case protoreflect.MessageKind:
					found = controlIn(l.Get(i).Message(), fmt.Sprintf("%s[%d].", name, i))
				}
			}
		case fd.IsMap():
		case fd.Kind() == protoreflect.StringKind:
			if bad(v.String()) {
				found = name
			}
		case fd.Kind() == protoreflect.MessageKind:
			found = controlIn(v.Message(), name+".")
		}
		return found == ""
	})
	return found
}
