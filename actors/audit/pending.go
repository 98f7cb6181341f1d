package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// A write's audit events go in the write's own transaction (InWrite): the
// change and its audit row commit together, and the write is answered
// whatever becomes of the audit chain. The chain takes them when asked
// (Drain, right after the write; Drainer, for what is left).

// InWrite returns ctx carrying events to be written in the transaction of
// the one write ctx is handed to (persistence.WithAudit), for this
// member's chain.
func (r Recorder) InWrite(ctx context.Context, events ...*messages.AuditEvent) context.Context {
	pending := make([]persistence.PendingAudit, len(events))
	for i, e := range events {
		pending[i] = r.Pending(e)
	}
	return persistence.WithAudit(ctx, pending...)
}

// Drain asks this member's chain to chain the events its writes left
// pending, and waits for it, so that the access log shows a write as soon
// as it is answered. The events are durable already: a failure is only
// logged (and returned), and the Drainer chains them later.
func (r Recorder) Drain(logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	_, err := r.Chain.append(ctx, &appendRequest{drain: true}, r.timeout())
	if err != nil && logger != nil {
		logger.Warn("audit events of a write wait to be chained", "shard", r.Shard(), "error", err)
	}
	return err
}

// Pending is an audit event as a write's transaction writes it
// (persistence.WithAudit and the writes that make their event).
func (r Recorder) Pending(e *messages.AuditEvent) persistence.PendingAudit {
	return persistence.PendingAudit{Shard: r.Shard(), Event: e}
}

// Drainer has this member's chain chain the writes' audit events that
// wait: those its own writes could not chain at once, and those another
// chain left (its member died) or no chain took (the admin commands). A
// pending event is chained once, by whichever chain takes it first.
type Drainer struct {
	DB       *persistence.DB
	Recorder Recorder
	// Every is the pause between looks (0: a second); another chain's
	// event waits at least that long before this one adopts it.
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

// Pass chains the events that have waited longer than Every, if any; it
// returns how many chains had such events.
func (d Drainer) Pass(ctx context.Context) int {
	before := time.Now().Add(-d.Every)
	shards, err := d.DB.PendingAuditShards(ctx, before)
	if err != nil {
		if d.Logger != nil {
			d.Logger.Warn("audit drain: cannot list pending events", "error", err)
		}
		return 0
	}
	if len(shards) == 0 {
		return 0
	}
	if _, err := d.Recorder.Chain.append(ctx, &appendRequest{drain: true, adoptBefore: before}, d.Recorder.timeout()); err != nil && d.Logger != nil {
		d.Logger.Warn("audit drain: pending events were not chained; the next pass tries again", "error", err)
	}
	return len(shards)
}
