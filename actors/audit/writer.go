package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// Writer is a chain of its own for a writer that appends audit rows inside
// its own transactions (the calendar committer: a group's bookings and
// their audit rows commit together, with no pending rows and no second
// transaction to chain them). Like Chain it is opened per member
// incarnation under a new shard number, and only this process appends to
// it.
//
// Invariant: the head in memory is the database's whenever ready is set;
// a transaction that may not have committed as the Writer believes
// (Done with held false) clears it, and the next use claims the chain
// again and re-reads the head, in that order (see persistence.Fence).
type Writer struct {
	db      *persistence.DB
	member  string
	timeout time.Duration

	mu    sync.Mutex // held from Begin to Done: one transaction at a time
	shard int32
	fence persistence.Fence
	ready bool
	seq   int64
	hash  []byte
}

// OpenWriter registers a new chain for this member incarnation (member is
// its id, address its remoting address).
func OpenWriter(ctx context.Context, db *persistence.DB, member, address string) (*Writer, error) {
	info, fence, err := db.OpenAuditChain(ctx, member, address)
	if err != nil {
		return nil, err
	}
	return &Writer{db: db, member: member, timeout: 3 * time.Second, shard: info.Shard, fence: fence, ready: true, hash: []byte{}}, nil
}

// Shard is the writer's chain's shard number.
func (w *Writer) Shard() int32 { return w.shard }

// Begin locks the writer for one transaction and returns what chains its
// events onto the head; Done must follow, whatever became of it.
func (w *Writer) Begin() (*persistence.ChainedAudit, error) {
	w.mu.Lock()
	if !w.ready {
		if err := w.reload(); err != nil {
			w.mu.Unlock()
			return nil, fmt.Errorf("audit chain %d: %w", w.shard, err)
		}
	}
	seq, prev, shard := w.seq, w.hash, w.shard
	return &persistence.ChainedAudit{Fence: w.fence, Rows: func(events []persistence.PendingAudit) ([]persistence.AuditRow, error) {
		rows := make([]persistence.AuditRow, 0, len(events))
		s, h := seq, prev
		for _, pe := range events {
			e, ok := pe.Event.(*messages.AuditEvent)
			if !ok {
				return nil, fmt.Errorf("audit chain %d: %T is not an audit event", shard, pe.Event)
			}
			s++
			r := rowOf(shard, s, e)
			r.PrevHash = h
			r.Hash = Hash(h, &r)
			h = r.Hash
			rows = append(rows, r)
		}
		return rows, nil
	}}, nil
}

// Done unlocks the writer after the transaction Begin began: rows were
// appended (held), or the head may not be what the writer holds (not
// held), and is read again before the next transaction.
func (w *Writer) Done(rows []persistence.AuditRow, held bool) {
	defer w.mu.Unlock()
	if !held {
		w.ready = false
		return
	}
	if n := len(rows); n > 0 {
		w.seq, w.hash = rows[n-1].Seq, rows[n-1].Hash
	}
}

func (w *Writer) reload() error {
	f, seq, hash, err := claimHead(w.db, w.shard, w.member, w.timeout)
	if err != nil {
		return err
	}
	w.fence, w.seq, w.hash, w.ready = f, seq, hash, true
	return nil
}
