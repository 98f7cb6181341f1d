package audit

import (
	"context"
	"log/slog"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// A write's audit events go in the write's own transaction (InWrite): the
// change and its audit row commit together, and the write is answered
// whatever becomes of the audit grain. The shard chains them when asked
// (Chain, right after the write; Drainer, for what is left).

// InWrite returns ctx carrying events about key, to be written in the
// transaction of the one write ctx is handed to (persistence.WithAudit).
func (r Recorder) InWrite(ctx context.Context, key string, events ...*messages.AuditEvent) context.Context {
	shard := int32(r.ShardOf(key))
	pending := make([]persistence.PendingAudit, len(events))
	for i, e := range events {
		pending[i] = persistence.PendingAudit{Shard: shard, Event: e}
	}
	return persistence.WithAudit(ctx, pending...)
}

// Chain asks key's shard to chain the events writes left pending, and
// waits for it, so that the access log shows a write as soon as it is
// answered. The events are durable already: a failure is only logged, and
// the Drainer chains them later.
func (r Recorder) Chain(ctx actorcluster.GrainContext, key string, logger *slog.Logger) {
	rctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	if err := r.drain(rctx, ctx.Cluster(), r.ShardOf(key)); err != nil && logger != nil {
		logger.Warn("audit events of a write wait to be chained", "shard", r.ShardOf(key), "error", err)
	}
}

// ChainKey is Chain for callers outside a grain (the edge's own writes).
func (r Recorder) ChainKey(ctx context.Context, c *actorcluster.Cluster, key string, logger *slog.Logger) {
	if err := r.drain(ctx, c, r.ShardOf(key)); err != nil && logger != nil {
		logger.Warn("audit events of a write wait to be chained", "shard", r.ShardOf(key), "error", err)
	}
}

// Pending is the audit event about key, as a write's transaction writes
// it (persistence.WithAudit and the writes that make their event).
func (r Recorder) Pending(key string, e *messages.AuditEvent) persistence.PendingAudit {
	return persistence.PendingAudit{Shard: int32(r.ShardOf(key)), Event: e}
}

func (r Recorder) drain(ctx context.Context, c *actorcluster.Cluster, shard int) error {
	id := ShardIdentity(shard)
	_, err := cluster.Call(ctx, c, "Audit", id, func() (*messages.AppendAuditReply, error) {
		return messages.GetAuditGrainClient(c, id).Append(&messages.AppendAuditRequest{Drain: true}, cluster.CallOptions(r.Timeout)...)
	})
	return err
}

// Drainer asks the shards to chain the writes' audit events that wait:
// those whose write could not reach its shard at once. Every member runs
// one; a shard chains each event once, whoever asks.
type Drainer struct {
	DB       *persistence.DB
	Cluster  *actorcluster.Cluster
	Recorder Recorder
	// Every is the pause between looks (0: a second); an event waits at
	// least that long before the drainer asks for it.
	Every  time.Duration
	Logger *slog.Logger
}

// Run drains until ctx ends.
func (d Drainer) Run(ctx context.Context) {
	if d.Every <= 0 {
		d.Every = time.Second
	}
	t := time.NewTicker(d.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.Pass(ctx)
	}
}

// Pass asks every shard with events waiting longer than Every to chain
// them; it returns how many shards it asked.
func (d Drainer) Pass(ctx context.Context) int {
	shards, err := d.DB.PendingAuditShards(ctx, time.Now().Add(-d.Every))
	if err != nil {
		if d.Logger != nil {
			d.Logger.Warn("audit drain: cannot list pending events", "error", err)
		}
		return 0
	}
	for _, s := range shards {
		if err := d.Recorder.drain(ctx, d.Cluster, int(s)); err != nil && d.Logger != nil {
			d.Logger.Warn("audit drain: the shard did not chain its pending events; the next pass asks again", "shard", s, "error", err)
		}
	}
	return len(shards)
}
