package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/proof"
	"google.golang.org/protobuf/proto"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// Deps are what every audit grain of a process shares.
type Deps struct {
	// Proof proves the caller of every request before the grain sees it
	// (actors/proof); nil refuses every request.
	Proof  *proof.Checker
	DB     *persistence.DB
	Logger *slog.Logger
	// WriteTimeout bounds one batch write; it must be shorter than the
	// callers' request timeout so they hear the failure.
	WriteTimeout time.Duration
	// Metrics hears each batch write (nil: none).
	Metrics *Metrics
}

// Metrics are the audit shards' batch sizes and write latency on a member.
type Metrics struct {
	BatchEvents  prometheus.Histogram
	WriteSeconds *prometheus.HistogramVec // by outcome: ok, failed
}

// NewMetrics makes the audit metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "caregrid_audit_batch_events", Help: "Audit events per batch a shard on this member wrote (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		WriteSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "caregrid_audit_write_seconds", Help: "Time to write one audit batch, by outcome (ok, failed).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.BatchEvents, m.WriteSeconds)
	return m
}

func (m *Metrics) observe(events int, took time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.BatchEvents.Observe(float64(events))
	m.WriteSeconds.WithLabelValues(outcome).Observe(took.Seconds())
}

// Kind registers the audit grain kind. proto.actor keeps the grain factory
// in a package-level variable, so every member of a process shares deps.
func Kind(deps Deps) *actorcluster.Kind {
	if deps.WriteTimeout <= 0 {
		deps.WriteTimeout = 3 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	// Shards stay active: their chain head is their state, reloading it costs a query.
	return messages.NewAuditKind(func() messages.Audit { return &Grain{deps: deps} }, 0, actor.WithReceiverMiddleware(deps.Proof.Middleware(proof.Policy{Service: "Audit", NodeOnly: true})))
}

// ShardIdentity is the grain identity of shard n.
func ShardIdentity(n int) string { return "shard-" + strconv.Itoa(n) }

// Grain is one audit shard. It owns its shard's hash chain: it claims the
// shard (fence) and reads the chain head on activation, then appends.
//
// Group commit: while one batch is being written, requests queue in
// pending; when the write finishes, they all go out as the next batch. A
// request is answered only after its events are durable. Any write failure
// fails the batch and the queue, and stops the grain, so that the next
// activation re-reads the head from the database instead of trusting memory.
type Grain struct {
	deps    Deps
	shard   int32
	owner   string
	ready   bool
	fence   persistence.Fence
	seq     int64
	hash    []byte
	writing bool
	pending []pendingAppend
	stopped bool
}

type pendingAppend struct {
	sender *actor.PID
	events []*messages.AuditEvent
	drain  bool
}

// drainLimit is how many of the writes' pending events one batch chains.
const drainLimit = 1000

// flushDone reports a finished batch write to the grain, with the rows it
// chained from the writes' pending events.
type flushDone struct {
	err     error
	drained []persistence.AuditRow
}

func (g *Grain) Init(ctx actorcluster.GrainContext) {
	g.owner = ctx.Cluster().ActorSystem.Address()
	n, err := strconv.Atoi(strings.TrimPrefix(ctx.Identity(), "shard-"))
	if err != nil || !strings.HasPrefix(ctx.Identity(), "shard-") || n < 0 {
		g.shard = -1
		return
	}
	g.shard = int32(n)
}

func (g *Grain) Terminate(actorcluster.GrainContext)      {}
func (g *Grain) ReceiveDefault(actorcluster.GrainContext) {}

// load claims the shard and reads its chain head, in that order (see Fence).
func (g *Grain) load() error {
	ctx, cancel := context.WithTimeout(context.Background(), g.deps.WriteTimeout)
	defer cancel()
	f, err := g.deps.DB.Claim(ctx, persistence.AuditKind, ShardIdentity(int(g.shard)), g.owner)
	if err != nil {
		return err
	}
	seq, hash, err := g.deps.DB.AuditHead(ctx, g.shard)
	if err != nil {
		return err
	}
	if hash == nil {
		hash = []byte{}
	}
	g.fence, g.seq, g.hash, g.ready = f, seq, hash, true
	return nil
}

// Append queues events for the next batch; the reply is sent when the batch is durable.
func (g *Grain) Append(req *messages.AppendAuditRequest, _ func(*messages.AppendAuditReply), _ func(error), ctx actorcluster.GrainContext) error {
	if g.shard < 0 {
		return messages.ErrInvalidArgument("audit grain identity %q is not shard-N", ctx.Identity())
	}
	if g.stopped {
		return messages.ErrFenced("audit shard %d is stopping", g.shard)
	}
	if len(req.Events) == 0 && !req.Drain {
		return messages.ErrInvalidArgument("no events")
	}
	for _, e := range req.Events {
		if e.GetOccurredAt() == nil || e.Action == "" || e.Outcome == messages.AuditOutcome_AUDIT_OUTCOME_UNSPECIFIED {
			return messages.ErrInvalidArgument("an audit event needs occurred_at, action and outcome")
		}
	}
	if !g.ready {
		if err := g.load(); err != nil {
			g.deps.Logger.Error("audit shard load failed", "shard", g.shard, "error", err)
			g.stop(ctx)
			return messages.ErrAuditUnavailable("audit shard %d: store unavailable", g.shard)
		}
	}
	g.pending = append(g.pending, pendingAppend{sender: ctx.Sender(), events: req.Events, drain: req.Drain})
	if !g.writing {
		g.flush(ctx)
	}
	return nil
}

// flush writes everything pending as one batch, off the actor's goroutine,
// and continues in the actor when the write is done (ReenterAfter).
func (g *Grain) flush(ctx actorcluster.GrainContext) {
	batch := g.pending
	g.pending = nil
	g.writing = true

	rows := make([]persistence.AuditRow, 0, len(batch))
	seqs := make([][]int64, len(batch))
	seq, prev := g.seq, g.hash
	drain := false
	for i, p := range batch {
		drain = drain || p.drain
		for _, e := range p.events {
			seq++
			r := rowOf(g.shard, seq, e)
			r.PrevHash = prev
			r.Hash = Hash(prev, &r)
			prev = r.Hash
			rows = append(rows, r)
			seqs[i] = append(seqs[i], seq)
		}
	}
	fence, db, timeout, shard := g.fence, g.deps.DB, g.deps.WriteTimeout, g.shard
	system := ctx.ActorSystem()
	done := actor.NewFuture(system, timeout+time.Second)
	// The writes' pending events continue the chain after the batch's.
	chain := func(events [][]byte) ([]persistence.AuditRow, error) {
		out := make([]persistence.AuditRow, 0, len(events))
		s, h := seq, prev
		for _, b := range events {
			var e messages.AuditEvent
			if err := proto.Unmarshal(b, &e); err != nil {
				return nil, fmt.Errorf("pending audit event: %w", err)
			}
			s++
			r := rowOf(shard, s, &e)
			r.PrevHash = h
			r.Hash = Hash(h, &r)
			h = r.Hash
			out = append(out, r)
		}
		return out, nil
	}
	metrics := g.deps.Metrics
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		started := time.Now()
		if !drain {
			err := db.AppendAudit(wctx, fence, rows)
			metrics.observe(len(rows), time.Since(started), err)
			system.Root.Send(done.PID(), &flushDone{err: err})
			return
		}
		drained, err := db.AppendAuditDraining(wctx, fence, shard, rows, drainLimit, chain)
		metrics.observe(len(rows)+len(drained), time.Since(started), err)
		system.Root.Send(done.PID(), &flushDone{err: err, drained: drained})
	}()
	ctx.ReenterAfter(done, func(res interface{}, err error) {
		g.writing = false
		var drained []persistence.AuditRow
		if err == nil {
			if d, ok := res.(*flushDone); ok {
				err, drained = d.err, d.drained
			} else {
				err = fmt.Errorf("unexpected flush result %T", res)
			}
		}
		if err != nil {
			g.failAll(ctx, batch, err)
			return
		}
		g.seq, g.hash = seq, prev
		if n := len(drained); n > 0 {
			g.seq, g.hash = drained[n-1].Seq, drained[n-1].Hash
		}
		for i, p := range batch {
			if p.sender != nil {
				ctx.Send(p.sender, &messages.AppendAuditReply{Seqs: seqs[i]})
			}
		}
		if len(g.pending) > 0 {
			g.flush(ctx)
		}
	})
}

// failAll answers the failed batch and everything queued behind it, and
// stops the grain: after a failed or timed-out write the head in memory
// may not be the head in the database.
func (g *Grain) failAll(ctx actorcluster.GrainContext, batch []pendingAppend, err error) {
	var reply *actorcluster.GrainErrorResponse
	if errors.Is(err, persistence.ErrFenced) {
		reply = messages.ErrFenced("audit shard %d moved to another activation", g.shard)
	} else {
		g.deps.Logger.Error("audit batch write failed", "shard", g.shard, "error", err)
		reply = messages.ErrAuditUnavailable("audit shard %d: write failed", g.shard)
	}
	for _, p := range append(batch, g.pending...) {
		if p.sender != nil {
			ctx.Send(p.sender, reply)
		}
	}
	g.pending = nil
	g.stop(ctx)
}

func (g *Grain) stop(ctx actorcluster.GrainContext) {
	g.ready, g.stopped = false, true
	ctx.Poison(ctx.Self())
}

func rowOf(shard int32, seq int64, e *messages.AuditEvent) persistence.AuditRow {
	c := e.GetCaller()
	return persistence.AuditRow{
		Shard: shard, Seq: seq,
		// PostgreSQL keeps microseconds; hash what will be stored.
		OccurredAt:       e.GetOccurredAt().AsTime().UTC().Truncate(time.Microsecond),
		Subject:          c.GetSubject(),
		Role:             c.GetRole().Name(),
		Client:           c.GetClient(),
		PurposeOfUse:     c.GetPurposeOfUse(),
		BreakGlassReason: c.GetBreakGlassReason(),
		RequestID:        c.GetRequestId(),
		SourceAddress:    c.GetSourceAddress(),
		Action:           e.Action,
		ResourceType:     e.ResourceType,
		ResourceID:       e.ResourceId,
		PatientID:        e.PatientId,
		Outcome:          e.Outcome.Name(),
		Detail:           e.Detail,
		ClientRequestID:  c.GetClientRequestId(),
	}
}
