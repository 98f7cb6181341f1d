package calendar

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/persistence"
)

// Committer groups the batches a member's calendar grains write at the
// same time into one transaction (persistence.WriteCalendars): each grain
// already group-commits its own requests, and this groups across doctors,
// so that bookings spread over many doctors pay one commit per group
// instead of one per doctor. Each batch keeps its own fence and its own
// outcome. A batch that finds no other waiting is written alone, as
// before, with no added wait: groups form only from what queues while
// earlier groups are being written.
//
// Once it has a chain of its own (UseChain), a group's transaction also
// chains the group's audit events onto it, so its grains are answered at
// commit: no pending rows, and no second transaction per group to chain
// them. What a group cannot chain so (a batch written alone, or the chain
// could not be read) is left pending, and chain takes it before those
// grains are answered.
type Committer struct {
	db *persistence.DB
	// chain, when set, makes the audit events a committed group left
	// pending part of the member's audit chain before its grains hear of
	// it: one request to the chain per group, instead of one per grain's
	// batch.
	chain    func() error
	maxGroup int
	queue    chan *commitRequest
	stop     chan struct{}
	stopped  sync.Once
	wg       sync.WaitGroup
	// answering counts the groups whose events are being chained.
	answering sync.WaitGroup
	// leftPending: a group's events were left pending and chain could not
	// take them; the next group asks chain again (the Drainer would, later).
	leftPending atomic.Bool
	// Counts of what was written, for the operators' metrics.
	groups, batches, alone atomic.Int64
	// ownChain, once set (UseChain), is the committer's own audit chain: a
	// group's transaction chains its audit events itself, and only
	// batches written alone leave theirs for chain.
	ownChain atomic.Pointer[audit.Writer]
}

// Committer defaults: how many group transactions run at once, and how
// many batches one holds at most. One writer makes the largest groups: on
// the 2-core reference machine spread booking did a third better with one
// than with two, and four lost more (with UseChain, writers take turns on
// the one chain: a group holds it for its transaction). A group never
// waits on a claim in progress (WriteCalendars leaves such a batch out),
// and what it leaves pending is chained beside the next group.
const (
	DefaultCommitWriters = 1
	DefaultCommitGroup   = 64
)

type commitRequest struct {
	ctx      context.Context // nil for Submit
	deadline time.Time       // Submit's
	batch    persistence.FencedCalendarBatch
	// deliver hears the outcome, once, from the committer's goroutine.
	deliver func(persistence.CalendarResult)
}

// NewCommitter starts writers group writers (0: DefaultCommitWriters).
// chain (may be nil) chains the audit events a group wrote, and runs
// before the group's grains are answered.
func NewCommitter(db *persistence.DB, writers int, chain func() error) *Committer {
	if writers <= 0 {
		writers = DefaultCommitWriters
	}
	c := &Committer{db: db, chain: chain, maxGroup: DefaultCommitGroup, queue: make(chan *commitRequest, 1024), stop: make(chan struct{})}
	c.wg.Add(writers)
	for range writers {
		go c.writer()
	}
	return c
}

// UseChain makes the groups chain their audit events in their own
// transaction, onto w (opened once the member has joined: its id names
// the chain).
func (c *Committer) UseChain(w *audit.Writer) { c.ownChain.Store(w) }

// Close stops the writers once the groups being written are done; a
// Write after it fails. A nil Committer has nothing to close.
func (c *Committer) Close() {
	if c == nil {
		return
	}
	c.stopped.Do(func() { close(c.stop) })
	c.wg.Wait()
	c.answering.Wait()
	// What was submitted and not written hears that the member stops.
	for {
		select {
		case req := <-c.queue:
			req.deliver(persistence.CalendarResult{Err: errCommitterClosed})
		default:
			return
		}
	}
}

// errCommitterClosed is a write refused because the member is stopping.
var errCommitterClosed = persistence.ErrUnavailable

// Write writes one grain's batch through its fence, grouped with whatever
// other grains write meanwhile, and returns as WriteCalendar does.
func (c *Committer) Write(ctx context.Context, f persistence.Fence, b *persistence.CalendarBatch) ([]string, error) {
	done := make(chan persistence.CalendarResult, 1)
	req := &commitRequest{ctx: ctx, batch: persistence.FencedCalendarBatch{Fence: f, Batch: b},
		deliver: func(r persistence.CalendarResult) { done <- r }}
	select {
	case c.queue <- req:
	case <-c.stop:
		return nil, errCommitterClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-done:
		return r.Taken, r.Err
	case <-ctx.Done():
		// The group may still commit it: the grain treats this as any
		// failed write (it drops its state and reloads).
		return nil, ctx.Err()
	}
}

// Submit queues one grain's batch, to be written by deadline, and returns
// at once; deliver hears the outcome (as Write returns it) once, from the
// committer's goroutine, and must not block: a grain sends it to itself
// as a message, which costs no goroutine and no future per batch. An
// error means the batch was not queued (the committer is closed).
func (c *Committer) Submit(deadline time.Time, f persistence.Fence, b *persistence.CalendarBatch, deliver func(persistence.CalendarResult)) error {
	req := &commitRequest{deadline: deadline, batch: persistence.FencedCalendarBatch{Fence: f, Batch: b}, deliver: deliver}
	select {
	case c.queue <- req:
		return nil
	case <-c.stop:
		return errCommitterClosed
	}
}

func (c *Committer) writer() {
	defer c.wg.Done()
	for {
		var group []*commitRequest // a new one each time: answered after the writer moves on
		select {
		case <-c.stop:
			return
		case req := <-c.queue:
			group = append(group, req)
		}
	gather:
		for len(group) < c.maxGroup {
			select {
			case req := <-c.queue:
				group = append(group, req)
			default:
				break gather
			}
		}
		c.write(group)
	}
}

// write writes one group under the earliest of its requests' deadlines.
func (c *Committer) write(group []*commitRequest) {
	batches := make([]persistence.FencedCalendarBatch, 0, len(group))
	deadline := time.Time{}
	for _, r := range group {
		batches = append(batches, r.batch)
		d, ok := r.deadline, !r.deadline.IsZero()
		if r.ctx != nil {
			d, ok = r.ctx.Deadline()
		}
		if ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	if len(group) == 1 && group[0].ctx != nil {
		ctx = group[0].ctx // one batch: its own context (its trace) as before
	}
	results := c.writeGroup(ctx, batches)
	answer := func() {
		for i, res := range results {
			group[i].deliver(res)
		}
	}
	pending := c.leftPending.Load()
	alone := int64(0)
	for _, r := range results {
		pending = pending || (r.Pending && r.Err == nil)
		if r.Pending {
			alone++
		}
	}
	c.groups.Add(1)
	c.batches.Add(int64(len(results)))
	c.alone.Add(alone)
	if c.chain == nil || !pending {
		answer()
		return
	}
	// The next group is written while this one's events are chained.
	c.leftPending.Store(false)
	c.answering.Add(1)
	go func() {
		defer c.answering.Done()
		if err := c.chain(); err != nil {
			c.leftPending.Store(true)
		}
		answer()
	}()
}

// writeGroup writes batches in one transaction that chains their audit
// events onto the committer's own chain, or, without one (or while it
// cannot be read), leaves them pending for the member's chain.
func (c *Committer) writeGroup(ctx context.Context, batches []persistence.FencedCalendarBatch) []persistence.CalendarResult {
	w := c.ownChain.Load()
	if w == nil {
		return c.db.WriteCalendars(ctx, batches)
	}
	chained, err := w.Begin()
	if err != nil {
		return c.db.WriteCalendars(ctx, batches)
	}
	g := c.db.WriteCalendarsChained(ctx, batches, chained)
	w.Done(g.Chained, g.ChainHeld)
	return g.Results
}

// Counts returns the groups written, the batches in them, and the batches
// whose audit events were left pending (written alone, or without a chain
// of the committer's).
func (c *Committer) Counts() (groups, batches, alone int64) {
	return c.groups.Load(), c.batches.Load(), c.alone.Load()
}

// Chains reports whether the committer chains the audit events of what
// it wrote before answering (the grains then need not ask for it).
func (c *Committer) Chains() bool { return c != nil && c.chain != nil }
