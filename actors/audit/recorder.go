package audit

import (
	"context"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultShards is the number of audit shards. Every member must use the
// same number: it decides which shard holds a patient's events. Fewer
// shards make larger group commits: on the 2-core reference machine one
// shard served about 1.6x the audited reads of two and 1.2x the bookings
// (see README, Benchmarks). A cluster whose audit appends outgrow one
// grain's group commit raises it.
const DefaultShards = 1

// Recorder hands events to the audit grains and waits until they are durable.
type Recorder struct {
	Shards  int
	Timeout time.Duration
}

// ShardOf is the shard that keeps the events of one patient (or resource).
func (r Recorder) ShardOf(key string) int {
	n := r.Shards
	if n <= 0 {
		n = DefaultShards
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

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

// Record appends events that share a key (the patient id) to its shard and
// returns once they are durable. An error means they may not be: the caller
// must fail the access it was recording.
func (r Recorder) Record(ctx context.Context, c *actorcluster.Cluster, key string, events ...*messages.AuditEvent) error {
	id := ShardIdentity(r.ShardOf(key))
	req := &messages.AppendAuditRequest{Events: events}
	_, err := cluster.Call(ctx, c, "Audit", id, func() (*messages.AppendAuditReply, error) {
		return messages.GetAuditGrainClient(c, id).Append(req, cluster.CallOptions(r.Timeout)...)
	})
	return err
}

// Access records one access durably for a grain, keyed by key (the patient,
// or the resource when there is no patient). When it cannot, it returns the
// AUDIT_UNAVAILABLE reply the grain must give instead of serving the
// access: nothing is served unaudited.
func (r Recorder) Access(ctx actorcluster.GrainContext, key string, e *messages.AuditEvent) error {
	rctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	if err := r.Record(rctx, ctx.Cluster(), key, e); err != nil {
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
// already (written in the transaction of the change, InWrite): it asks each
// shard to chain them, then sends the replies, whatever the shard did.
// Nothing blocks the grain.
func (r Recorder) ChainThenAnswerAll(ctx actorcluster.GrainContext, answers []Answer, logger *slog.Logger) {
	system, c := ctx.ActorSystem(), ctx.Cluster()
	for shard, as := range r.byShard(answers) {
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), r.timeout())
			defer cancel()
			if err := r.drain(rctx, c, shard); err != nil && logger != nil {
				logger.Warn("audit events of a write wait to be chained", "shard", shard, "error", err)
			}
			for _, a := range as {
				system.Root.Send(a.Sender, a.Reply)
			}
		}()
	}
}

// byShard groups the answers that have a sender by their key's shard.
func (r Recorder) byShard(answers []Answer) map[int][]Answer {
	out := map[int][]Answer{}
	for _, a := range answers {
		if a.Sender != nil {
			s := r.ShardOf(a.Key)
			out[s] = append(out[s], a)
		}
	}
	return out
}

// Answer is one reply that waits for its audit events (see AnswerAllAfter).
type Answer struct {
	Sender *actor.PID
	Reply  proto.Message
	Key    string // the patient, as for Record
	Events []*messages.AuditEvent
}

// AnswerAllAfter is AnswerAfter for many replies at once: the events of
// each shard go in one append, so a grain that finishes a batch of
// requests together (the calendar, after a group commit) pays one call per
// shard instead of one per reply. A reply is sent once its shard's append
// is durable, or replaced by AUDIT_UNAVAILABLE if it failed.
func (r Recorder) AnswerAllAfter(ctx actorcluster.GrainContext, answers []Answer) {
	system, c := ctx.ActorSystem(), ctx.Cluster()
	for _, as := range r.byShard(answers) {
		go func() {
			var events []*messages.AuditEvent
			for _, a := range as {
				events = append(events, a.Events...)
			}
			rctx, cancel := context.WithTimeout(context.Background(), r.timeout())
			defer cancel()
			err := r.Record(rctx, c, as[0].Key, events...)
			for _, a := range as {
				reply := a.Reply
				if err != nil {
					reply = messages.ErrAuditUnavailable("the access could not be audited")
				}
				system.Root.Send(a.Sender, reply)
			}
		}()
	}
}

// AnswerAfter makes events durable and then sends reply to sender, without
// blocking the calling grain: a grain that keeps deciding while its
// replies wait for the audit trail (the calendar) answers this way. If the
// events cannot be recorded, sender gets AUDIT_UNAVAILABLE instead.
func (r Recorder) AnswerAfter(ctx actorcluster.GrainContext, sender *actor.PID, reply proto.Message, key string, events ...*messages.AuditEvent) {
	r.AnswerAllAfter(ctx, []Answer{{Sender: sender, Reply: reply, Key: key, Events: events}})
}
