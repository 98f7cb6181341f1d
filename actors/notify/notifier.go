package notify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/persistence"
)

// DefaultReminders are the reminder offsets of a clinic that set none: a
// day and two hours before.
var DefaultReminders = []int32{24 * 60, 2 * 60}

// Notifier decides messages: the events the relay queued, the reminders
// that fell due, the prescriptions about to end or ended. Every member
// runs one; SKIP LOCKED and the sweeps' cursors share the work.
type Notifier struct {
	DB      *persistence.DB
	Decider Decider
	// Reminders are the default offsets before an appointment, in minutes.
	Reminders []int32
	// PrescriptionNotice is how long before a prescription ends the
	// patient is told (default three days).
	PrescriptionNotice time.Duration
	// Batch is how many events one transaction decides (default 500).
	Batch  int
	Idle   time.Duration // pause when caught up (default 200 ms)
	Logger *slog.Logger
}

func (n *Notifier) defaults() {
	if len(n.Reminders) == 0 {
		n.Reminders = DefaultReminders
	}
	if n.PrescriptionNotice <= 0 {
		n.PrescriptionNotice = 72 * time.Hour
	}
	if n.Batch <= 0 {
		n.Batch = 500
	}
	if n.Idle <= 0 {
		n.Idle = 200 * time.Millisecond
	}
	if n.Logger == nil {
		n.Logger = slog.Default()
	}
	if n.Decider.Now == nil {
		n.Decider.Now = time.Now
	}
}

// Pass decides what is waiting or due now; it returns how many events it
// decided (a full batch of any kind: call again at once).
func (n *Notifier) Pass(ctx context.Context) (int, bool, error) {
	n.defaults()
	decide := n.Decider.Decide
	now := n.Decider.Now()
	queued, err := n.DB.DecideQueuedNotifications(ctx, n.Batch, decide)
	if err != nil {
		return 0, false, fmt.Errorf("queued notification events: %w", err)
	}
	reminders, err := n.DB.DecideReminders(ctx, now, n.Reminders, n.Batch, decide)
	if err != nil {
		return queued, false, fmt.Errorf("reminders: %w", err)
	}
	ends, err := n.DB.DecidePrescriptionEnds(ctx, now, n.PrescriptionNotice, n.Batch, decide)
	if err != nil {
		return queued + reminders, false, fmt.Errorf("prescription ends: %w", err)
	}
	more := queued == n.Batch || reminders >= n.Batch || ends == n.Batch
	return queued + reminders + ends, more, nil
}

// Run decides until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	n.defaults()
	backoff := n.Idle
	for {
		_, more, err := n.Pass(ctx)
		wait := n.Idle
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			n.Logger.Warn("notifier failed; retrying", "err", err, "in", backoff)
			wait, backoff = backoff, min(2*backoff, 5*time.Second)
		case more:
			wait, backoff = 0, n.Idle
		default:
			backoff = n.Idle
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// Queue is the identity provider's mailer on a node with notifications:
// a request only writes the message (sealed, in the notifications table),
// and the dispatchers send it with retries.
type Queue struct {
	DB      *persistence.DB
	Decider Decider
}

// Send queues a mail to an account.
func (q Queue) Send(ctx context.Context, to, subject, body string) error {
	d, err := q.Decider.AccountMail("account-mail:"+persistence.NewNotificationID(), to, subject, body)
	if err != nil {
		return err
	}
	return q.DB.QueueNotification(ctx, d)
}
