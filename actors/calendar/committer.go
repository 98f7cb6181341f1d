package calendar

import (
	"context"
	"sync"
	"time"

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
type Committer struct {
	db *persistence.DB
	// chain, when set, makes the audit events a committed group wrote
	// part of the audit chain before its grains hear of it: one request to
	// the chain per group, instead of one per grain's batch.
	chain    func()
	maxGroup int
	queue    chan *commitRequest
	stop     chan struct{}
	stopped  sync.Once
	wg       sync.WaitGroup
	// answering counts the groups whose events are being chained.
	answering sync.WaitGroup
}

// Committer defaults: how many group transactions run at once, and how
// many batches one holds at most. One writer makes the largest groups: on
// the 2-core reference machine spread booking did a third better with one
// than with two, and four lost more. A group never waits on a claim in
// progress (WriteCalendars leaves such a batch out), and its chaining runs
// beside the next group.
const (
	DefaultCommitWriters = 1
	DefaultCommitGroup   = 64
)

type commitRequest struct {
	ctx   context.Context
	batch persistence.FencedCalendarBatch
	done  chan persistence.CalendarResult
}

// NewCommitter starts writers group writers (0: DefaultCommitWriters).
// chain (may be nil) chains the audit events a group wrote, and runs
// before the group's grains are answered.
func NewCommitter(db *persistence.DB, writers int, chain func()) *Committer {
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

// Close stops the writers once the groups being written are done; a
// Write after it fails. A nil Committer has nothing to close.
func (c *Committer) Close() {
	if c == nil {
		return
	}
	c.stopped.Do(func() { close(c.stop) })
	c.wg.Wait()
	c.answering.Wait()
}

// errCommitterClosed is a write refused because the member is stopping.
var errCommitterClosed = persistence.ErrUnavailable

// Write writes one grain's batch through its fence, grouped with whatever
// other grains write meanwhile, and returns as WriteCalendar does.
func (c *Committer) Write(ctx context.Context, f persistence.Fence, b *persistence.CalendarBatch) ([]string, error) {
	req := &commitRequest{ctx: ctx, batch: persistence.FencedCalendarBatch{Fence: f, Batch: b}, done: make(chan persistence.CalendarResult, 1)}
	select {
	case c.queue <- req:
	case <-c.stop:
		return nil, errCommitterClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.Taken, r.Err
	case <-ctx.Done():
		// The group may still commit it: the grain treats this as any
		// failed write (it drops its state and reloads).
		return nil, ctx.Err()
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
		if d, ok := r.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	if len(group) == 1 {
		ctx = group[0].ctx // one batch: its own context (its trace) as before
	}
	results := c.db.WriteCalendars(ctx, batches)
	answer := func() {
		for i, res := range results {
			group[i].done <- res
		}
	}
	if c.chain == nil {
		answer()
		return
	}
	// The next group is written while this one's events are chained.
	c.answering.Add(1)
	go func() {
		defer c.answering.Done()
		c.chain()
		answer()
	}()
}

// Chains reports whether the committer chains the audit events of what
// it wrote before answering (the grains then need not ask for it).
func (c *Committer) Chains() bool { return c != nil && c.chain != nil }
