package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Recorder hands events to this member's audit chain and waits until they
// are durable.
type Recorder struct {
	Chain   *Chain
	Timeout time.Duration
}

// Shard is the chain this member's events go to (Unchained without one).
func (r Recorder) Shard() int32 { return r.Chain.Shard() }

// Event builds one audit event about a patient's record. The caller's token
// stays behind: it proved the caller to the grain and is never recorded.
func Event(c *messages.Caller, action messages.AuditAction, resourceType, resourceID, patientID string, outcome messages.AuditOutcome, detail string, at time.Time) *messages.AuditEvent {
	if c.GetToken() != "" {
		c = &messages.Caller{Subject: c.Subject, Role: c.Role, Client: c.Client, PurposeOfUse: c.PurposeOfUse,
			RequestId: c.RequestId, SourceAddress: c.SourceAddress, BreakGlassReason: c.BreakGlassReason,
			ClientRequestId: c.ClientRequestId}
	}
	return &messages.AuditEvent{
		OccurredAt: timestamppb.New(at), Caller: c, Action: action.Name(),
		ResourceType: resourceType, ResourceId: resourceID, PatientId: patientID,
		Outcome: outcome, Detail: detail,
	}
}

// Record appends events to this member's chain and returns once they are
// durable. An error means they may not be: the caller must fail the access
// it was recording.
func (r Recorder) Record(ctx context.Context, events ...*messages.AuditEvent) error {
	_, err := r.Chain.append(ctx, &appendRequest{events: events}, r.timeout())
	return err
}

// Access records one access durably for a grain. When it cannot, it
// returns the AUDIT_UNAVAILABLE reply the grain must give instead of
// serving the access: nothing is served unaudited.
func (r Recorder) Access(e *messages.AuditEvent) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	if err := r.Record(ctx, e); err != nil {
		return messages.ErrAuditUnavailable("the access could not be audited")
	}
	return nil
}

func (r Recorder) timeout() time.Duration {
	if r.Timeout <= 0 {
		return cluster.DefaultTimeout
	}
	return r.Timeout
}

// OutcomeOf is the audit outcome of a grain's refusal: denied for a
// permission refusal, failed for anything else.
func OutcomeOf(reply *actorcluster.GrainErrorResponse) messages.AuditOutcome {
	if reply.Reason == messages.ErrorReason_PERMISSION_DENIED.String() {
		return messages.AuditOutcome_AUDIT_OUTCOME_DENIED
	}
	return messages.AuditOutcome_AUDIT_OUTCOME_FAILED
}

// ChainThenAnswerAll answers replies whose audit events are durable
// already (written in the transaction of the change, InWrite): it asks the
// chain to chain them, then sends the replies, whatever the chain did.
// Nothing blocks the grain.
func (r Recorder) ChainThenAnswerAll(ctx actorcluster.GrainContext, answers []Answer, logger *slog.Logger) {
	if len(answers) == 0 {
		return
	}
	system := ctx.ActorSystem()
	go func() {
		r.Drain(logger)
		for _, a := range answers {
			if a.Sender != nil {
				system.Root.Send(a.Sender, a.Reply)
			}
		}
	}()
}

// Answer is one reply that waits for its audit events (see AnswerAllAfter).
type Answer struct {
	Sender *actor.PID
	Reply  proto.Message
	Events []*messages.AuditEvent
}

// AnswerAllAfter is AnswerAfter for many replies at once: their events go
// in one append, so a grain that finishes a batch of requests together
// (the calendar, after a group commit) pays one append instead of one per
// reply. Each reply is sent once the append is durable, or replaced by
// AUDIT_UNAVAILABLE if it failed.
func (r Recorder) AnswerAllAfter(ctx actorcluster.GrainContext, answers []Answer) {
	if len(answers) == 0 {
		return
	}
	system := ctx.ActorSystem()
	go func() {
		var events []*messages.AuditEvent
		for _, a := range answers {
			events = append(events, a.Events...)
		}
		rctx, cancel := context.WithTimeout(context.Background(), r.timeout())
		defer cancel()
		err := r.Record(rctx, events...)
		for _, a := range answers {
			if a.Sender == nil {
				continue
			}
			reply := a.Reply
			if err != nil {
				reply = messages.ErrAuditUnavailable("the access could not be audited")
			}
			system.Root.Send(a.Sender, reply)
		}
	}()
}

// AnswerAfter makes events durable and then sends reply to sender, without
// blocking the calling grain: a grain that keeps deciding while its
// replies wait for the audit trail (the calendar) answers this way. If the
// events cannot be recorded, sender gets AUDIT_UNAVAILABLE instead.
func (r Recorder) AnswerAfter(ctx actorcluster.GrainContext, sender *actor.PID, reply proto.Message, events ...*messages.AuditEvent) {
	r.AnswerAllAfter(ctx, []Answer{{Sender: sender, Reply: reply, Events: events}})
}
