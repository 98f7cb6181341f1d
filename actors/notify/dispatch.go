package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/sony/gobreaker/v2"
)

// Sender delivers messages over one channel. It returns the provider's id
// for the message ("" when it gives none).
type Sender interface {
	Send(ctx context.Context, m Message) (providerID string, err error)
}

// permanent marks an error that sending again cannot cure (an address the
// provider refuses): the message is dead at once, and the channel's
// provider is not counted as failing.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that no retry cures.
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Retry is when a failed message is tried again.
type Retry struct {
	// Attempts is how many tries a message gets before it is dead (default 8).
	Attempts int
	// First is the pause after the first failure (default 10 s); each next
	// pause doubles, up to Max (default 1 h), with ±50 % jitter so that
	// messages failed together do not come back together.
	First, Max time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 8
	}
	if r.First <= 0 {
		r.First = 10 * time.Second
	}
	if r.Max <= 0 {
		r.Max = time.Hour
	}
	return r
}

// Backoff is the pause after a message's attempt-th failed try.
func (r Retry) Backoff(attempt int) time.Duration {
	r = r.withDefaults()
	d := r.First
	for i := 1; i < attempt && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// ChannelStats counts one channel's sends on this member.
type ChannelStats struct {
	Sent, Failed, Retried, Dead, Deferred atomic.Int64
}

// Dispatcher sends what is due. Every member runs one; they share the
// queue through the database (SKIP LOCKED and a lease). A message is sent
// at least once: a member that dies mid-send leaves it leased, and another
// member takes it when the lease runs out.
type Dispatcher struct {
	DB      *persistence.DB
	Sealer  Sealer
	Senders map[string]Sender
	Retry   Retry
	// Breaker configures each channel's circuit breaker: after Trip
	// consecutive failures (default 5) it opens and nothing is sent on the
	// channel for Open (default 30 s); then one message probes.
	Trip int
	Open time.Duration
	// Lease is how long a taken message is this member's (default 1 min):
	// longer than any send takes.
	Lease time.Duration
	// Batch is how many messages one pass takes (default 200); Workers how
	// many are sent at once (default 16).
	Batch, Workers int
	// Idle is the pause when nothing is due (default 200 ms).
	Idle   time.Duration
	Now    func() time.Time
	Logger *slog.Logger
	// OnGone is told of a push subscription its service says is gone.
	OnGone func(ctx context.Context, endpoint string)

	once     sync.Once
	breakers map[string]*gobreaker.CircuitBreaker[string]
	stats    map[string]*ChannelStats
}

func (d *Dispatcher) init() {
	d.once.Do(func() {
		d.Retry = d.Retry.withDefaults()
		if d.Trip <= 0 {
			d.Trip = 5
		}
		if d.Open <= 0 {
			d.Open = 30 * time.Second
		}
		if d.Lease <= 0 {
			d.Lease = time.Minute
		}
		if d.Batch <= 0 {
			d.Batch = 200
		}
		if d.Workers <= 0 {
			d.Workers = 16
		}
		if d.Idle <= 0 {
			d.Idle = 200 * time.Millisecond
		}
		if d.Now == nil {
			d.Now = time.Now
		}
		if d.Logger == nil {
			d.Logger = slog.Default()
		}
		d.breakers, d.stats = map[string]*gobreaker.CircuitBreaker[string]{}, map[string]*ChannelStats{}
		for _, ch := range Channels {
			d.stats[ch] = &ChannelStats{}
			d.breakers[ch] = gobreaker.NewCircuitBreaker[string](gobreaker.Settings{
				Name: ch, MaxRequests: 1, Timeout: d.Open,
				ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(d.Trip) },
				// A refused address says the provider is up.
				IsSuccessful: func(err error) bool { return err == nil || IsPermanent(err) },
				OnStateChange: func(name string, from, to gobreaker.State) {
					d.Logger.Warn("notification channel breaker", "channel", name, "from", from.String(), "to", to.String())
				},
			})
		}
	})
}

// Stats is this member's count of a channel's sends.
func (d *Dispatcher) Stats(channel string) *ChannelStats {
	d.init()
	return d.stats[channel]
}

// BreakerState is a channel's breaker: closed, half-open or open.
func (d *Dispatcher) BreakerState(channel string) gobreaker.State {
	d.init()
	return d.breakers[channel].State()
}

// Run sends until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	d.init()
	backoff := d.Idle
	for {
		n, err := d.Pass(ctx)
		wait := d.Idle
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			d.Logger.Warn("notification dispatch failed; retrying", "err", err, "in", backoff)
			wait, backoff = backoff, min(2*backoff, 5*time.Second)
		case n == d.Batch:
			wait, backoff = 0, d.Idle
		default:
			backoff = d.Idle
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

// Pass takes what is due and sends it; it returns how many it took.
func (d *Dispatcher) Pass(ctx context.Context) (int, error) {
	d.init()
	ns, err := d.DB.ClaimNotifications(ctx, d.Now(), d.Lease, d.Batch)
	if err != nil || len(ns) == 0 {
		return 0, err
	}
	var reminders []string
	for _, n := range ns {
		if n.Event == AppointmentReminder {
			reminders = append(reminders, n.About)
		}
	}
	var booked map[string]time.Time
	if len(reminders) > 0 {
		if booked, err = d.DB.BookedAppointmentStarts(ctx, reminders); err != nil {
			return 0, err
		}
	}
	sem := make(chan struct{}, d.Workers)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs []persistence.NotificationOutcome
	)
	for _, n := range ns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if o, ok := d.send(ctx, n, booked); ok {
				mu.Lock()
				outs = append(outs, o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// One write for the pass. Should it fail (or this member die first),
	// the messages stay leased and are sent again when the lease ends.
	if err := d.DB.RecordNotificationOutcomes(ctx, outs); err != nil && ctx.Err() == nil {
		d.Logger.Warn("recording notifications' delivery failed; they are sent again when their lease ends", "messages", len(outs), "err", err)
	}
	return len(ns), nil
}

// send tries one message and says what became of it; ok false when
// nothing is to be recorded (this member is stopping: the lease hands the
// message on).
func (d *Dispatcher) send(ctx context.Context, n persistence.Notification, booked map[string]time.Time) (persistence.NotificationOutcome, bool) {
	now := d.Now()
	out := persistence.NotificationOutcome{ID: n.ID, At: now}
	m, err := d.Sealer.Open(n)
	if err != nil {
		d.Logger.Error("notification cannot be opened; dead", "notification", n.ID, "err", err)
		out.State, out.Error = persistence.NotificationDead, "cannot be opened: "+err.Error()
		return out, true
	}
	if n.Event == AppointmentReminder {
		if start, ok := booked[n.About]; !ok || !start.Equal(m.Start) {
			out.State, out.Error = persistence.NotificationSkipped, "the appointment was cancelled or moved"
			return out, true
		}
	}
	sender, ok := d.Senders[n.Channel]
	stats := d.stats[n.Channel]
	if !ok {
		out.State, out.GiveBack, out.Next, out.Error = persistence.NotificationPending, true, now.Add(d.Open), "no "+n.Channel+" provider on this member"
		return out, true
	}
	providerID, err := d.breakers[n.Channel].Execute(func() (string, error) {
		sctx, cancel := context.WithTimeout(ctx, d.Lease/2)
		defer cancel()
		return sender.Send(sctx, m)
	})
	out.At = d.Now()
	switch {
	case err == nil:
		stats.Sent.Add(1)
		out.State, out.ProviderID = persistence.NotificationSent, providerID
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		// The provider is down: wait for the breaker, without a try spent.
		stats.Deferred.Add(1)
		out.State, out.GiveBack, out.Next = persistence.NotificationPending, true, out.At.Add(d.Open)
		out.Error = fmt.Sprintf("%s provider unavailable (breaker open)", n.Channel)
	case ctx.Err() != nil:
		return out, false
	default:
		stats.Failed.Add(1)
		out.State, out.Error, out.Next = persistence.NotificationPending, err.Error(), out.At.Add(d.Retry.Backoff(n.Attempts))
		if IsPermanent(err) || n.Attempts >= d.Retry.Attempts {
			stats.Dead.Add(1)
			out.State = persistence.NotificationDead
			d.Logger.Warn("notification dead", "notification", n.ID, "channel", n.Channel, "attempts", n.Attempts, "err", err)
		} else {
			stats.Retried.Add(1)
		}
		var gone goneError
		if errors.As(err, &gone) && d.OnGone != nil {
			d.OnGone(ctx, gone.endpoint)
		}
	}
	return out, true
}
