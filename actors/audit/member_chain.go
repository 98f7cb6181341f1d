package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// Deps are what a member's audit chain needs.
type Deps struct {
	DB     *persistence.DB
	Logger *slog.Logger
	// WriteTimeout bounds one batch write; it must be shorter than the
	// callers' request timeout so they hear the failure.
	WriteTimeout time.Duration
	// Metrics hears each batch write (nil: none).
	Metrics *Metrics
}

// Metrics are the audit chain's batch sizes and write latency on a member.
type Metrics struct {
	BatchEvents  prometheus.Histogram
	WriteSeconds *prometheus.HistogramVec // by outcome: ok, failed
}

// NewMetrics makes the audit metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "caregrid_audit_batch_events", Help: "Audit events per batch this member's chain wrote (group commit).",
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

// Chain is this member's audit chain: every access its grains and its
// edge record goes to it, never over the network, so that a member that is
// paused or dies stalls only the requests it was serving. Each member
// incarnation opens a chain of its own (a new shard number) when it
// starts, and no other process ever appends to it: two activations of one
// chain cannot exist. The chain head lives in one local actor, which
// group-commits: while one batch is written, appends queue and go out
// together as the next.
//
// Invariant: an append is answered only once its events are durable, or
// with an error; a failed write makes the actor re-claim the chain and
// re-read its head before the next batch, so memory never runs ahead of
// the database.
type Chain struct {
	deps   Deps
	opened chan struct{}
	// Set once by Open, before opened is closed.
	shard  int32
	system *actor.ActorSystem
	pid    *actor.PID
}

// NewChain returns a chain to open once the member's actor system runs;
// appends wait for Open (bounded by their context).
func NewChain(deps Deps) *Chain {
	if deps.WriteTimeout <= 0 {
		deps.WriteTimeout = 3 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Chain{deps: deps, opened: make(chan struct{})}
}

// Open registers a new chain for this member incarnation (member is its
// id, address its remoting address) and starts its actor in system.
func (c *Chain) Open(ctx context.Context, system *actor.ActorSystem, member, address string) error {
	info, fence, err := c.deps.DB.OpenAuditChain(ctx, member, address)
	if err != nil {
		return err
	}
	a := &chainActor{deps: c.deps, shard: info.Shard, member: member, fence: fence, ready: true, hash: []byte{}}
	// Spawned without a name: only this process holds its PID, and its
	// messages are Go values that no remote sender could encode.
	c.shard, c.system, c.pid = info.Shard, system, system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }))
	close(c.opened)
	c.deps.Logger.Info("audit chain opened", "shard", info.Shard, "member", member)
	return nil
}

// Shard is the chain's shard number; -1 before Open (Unchained).
func (c *Chain) Shard() int32 {
	if c == nil {
		return Unchained
	}
	select {
	case <-c.opened:
		return c.shard
	default:
		return Unchained
	}
}

// Unchained is the shard of events written where no chain runs (the admin
// commands): every member's chain adopts them (Drainer).
const Unchained int32 = -1

// ErrNoChain means the events were not recorded: this process has no
// open audit chain.
var ErrNoChain = errors.New("audit: no open audit chain on this member")

// appendRequest is an append, or (drain) a request to chain the writes'
// pending events, as the chain actor receives it. It is a Go value, never
// a protobuf: it cannot come over the remoting.
type appendRequest struct {
	events []*messages.AuditEvent
	drain  bool
	// adoptBefore also takes pending events of other chains written
	// before it (zero: only this chain's).
	adoptBefore time.Time
}

type appendReply struct {
	seqs []int64
	err  error
}

// append sends req to the actor and waits for its reply.
func (c *Chain) append(ctx context.Context, req *appendRequest, timeout time.Duration) (*appendReply, error) {
	if c == nil {
		return nil, ErrNoChain
	}
	select {
	case <-c.opened:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrNoChain, ctx.Err())
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	res, err := c.system.Root.RequestFuture(c.pid, req, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("audit chain %d: %w", c.shard, err)
	}
	r, ok := res.(*appendReply)
	if !ok {
		return nil, fmt.Errorf("audit chain %d: unexpected reply %T", c.shard, res)
	}
	if r.err != nil {
		return nil, r.err
	}
	return r, nil
}

// drainLimit is how many of the writes' pending events one batch chains.
const drainLimit = 1000

// chainActor owns the head of one chain.
type chainActor struct {
	deps    Deps
	shard   int32
	member  string
	fence   persistence.Fence
	ready   bool // the head below is the database's
	seq     int64
	hash    []byte
	writing bool
	pending []pendingAppend
}

type pendingAppend struct {
	sender *actor.PID
	req    *appendRequest
}

// flushDone reports a finished batch write to the actor, with the rows it
// chained from the writes' pending events.
type flushDone struct {
	err     error
	drained []persistence.AuditRow
}

func (a *chainActor) Receive(ctx actor.Context) {
	req, ok := ctx.Message().(*appendRequest)
	if !ok {
		return
	}
	for _, e := range req.events {
		if e.GetOccurredAt() == nil || e.Action == "" || e.Outcome == messages.AuditOutcome_AUDIT_OUTCOME_UNSPECIFIED {
			ctx.Respond(&appendReply{err: errors.New("audit: an event needs occurred_at, action and outcome")})
			return
		}
	}
	a.pending = append(a.pending, pendingAppend{sender: ctx.Sender(), req: req})
	if !a.writing {
		a.flush(ctx)
	}
}

// reload claims the chain again and reads its head, in that order (see
// persistence.Fence): after a failed write the head in memory may not be
// the head in the database.
func (a *chainActor) reload() error {
	f, seq, hash, err := claimHead(a.deps.DB, a.shard, a.member, a.deps.WriteTimeout)
	if err != nil {
		return err
	}
	a.fence, a.seq, a.hash, a.ready = f, seq, hash, true
	return nil
}

// claimHead claims chain shard for member and then reads its head, in
// that order (see persistence.Fence), within timeout.
func claimHead(db *persistence.DB, shard int32, member string, timeout time.Duration) (persistence.Fence, int64, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	f, err := db.ClaimAuditChain(ctx, shard, member)
	if err != nil {
		return persistence.Fence{}, 0, nil, err
	}
	seq, hash, err := db.AuditHead(ctx, shard)
	if err != nil {
		return persistence.Fence{}, 0, nil, err
	}
	if hash == nil {
		hash = []byte{}
	}
	return f, seq, hash, nil
}

// flush writes everything pending as one batch, off the actor's goroutine,
// and continues in the actor when the write is done (ReenterAfter).
func (a *chainActor) flush(ctx actor.Context) {
	batch := a.pending
	a.pending = nil
	if !a.ready {
		if err := a.reload(); err != nil {
			a.fail(ctx, batch, err)
			return
		}
	}
	a.writing = true

	rows := make([]persistence.AuditRow, 0, len(batch))
	seqs := make([][]int64, len(batch))
	seq, prev := a.seq, a.hash
	drain := false
	var adoptBefore time.Time
	for i, p := range batch {
		drain = drain || p.req.drain
		if p.req.adoptBefore.After(adoptBefore) {
			adoptBefore = p.req.adoptBefore
		}
		for _, e := range p.req.events {
			seq++
			r := rowOf(a.shard, seq, e)
			r.PrevHash = prev
			r.Hash = Hash(prev, &r)
			prev = r.Hash
			rows = append(rows, r)
			seqs[i] = append(seqs[i], seq)
		}
	}
	fence, db, timeout, shard := a.fence, a.deps.DB, a.deps.WriteTimeout, a.shard
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
	metrics := a.deps.Metrics
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
		drained, err := db.AppendAuditDraining(wctx, fence, shard, rows, drainLimit, adoptBefore, chain)
		metrics.observe(len(rows)+len(drained), time.Since(started), err)
		system.Root.Send(done.PID(), &flushDone{err: err, drained: drained})
	}()
	ctx.ReenterAfter(done, func(res interface{}, err error) {
		a.writing = false
		var drained []persistence.AuditRow
		if err == nil {
			if d, ok := res.(*flushDone); ok {
				err, drained = d.err, d.drained
			} else {
				err = fmt.Errorf("unexpected flush result %T", res)
			}
		}
		if err != nil {
			a.fail(ctx, batch, err)
		} else {
			a.seq, a.hash = seq, prev
			if n := len(drained); n > 0 {
				a.seq, a.hash = drained[n-1].Seq, drained[n-1].Hash
			}
			for i, p := range batch {
				ctx.Send(p.sender, &appendReply{seqs: seqs[i]})
			}
		}
		if len(a.pending) > 0 {
			a.flush(ctx)
		}
	})
}

// fail answers a failed batch and forgets the head: the next batch claims
// the chain and reads it again. The appends queued behind it are tried
// then, so one slow write does not fail requests that came after it.
func (a *chainActor) fail(ctx actor.Context, batch []pendingAppend, err error) {
	a.ready = false
	if errors.Is(err, persistence.ErrFenced) {
		err = fmt.Errorf("audit chain %d was claimed by another process: %w", a.shard, err)
	}
	a.deps.Logger.Error("audit batch write failed", "shard", a.shard, "error", err)
	for _, p := range batch {
		ctx.Send(p.sender, &appendReply{err: err})
	}
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
