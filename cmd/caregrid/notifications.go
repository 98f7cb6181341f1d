package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/persistence"
	"github.com/prometheus/client_golang/prometheus"
)

// notifications is a node's notifier and dispatcher with their channels.
type notifications struct {
	db         *persistence.DB
	cfg        notifyConfig
	decider    notify.Decider
	dispatcher *notify.Dispatcher
	notifier   *notify.Notifier
	vapid      notify.VAPID
	sms        *notify.SMS
	// mail: the login pages' mail goes through the queue (an email channel exists).
	mail bool
}

// notifyLanguage is the language of patients who chose none.
func (cfg nodeConfig) notifyLanguage() string {
	if cfg.Notify == nil || cfg.Notify.Language == "" {
		return "ro"
	}
	return cfg.Notify.Language
}

// newNotifications builds the node's notifications (nil without a
// configuration or a master key).
func newNotifications(db *persistence.DB, cfg nodeConfig) (*notifications, error) {
	if cfg.Notify == nil || cfg.Master == nil {
		return nil, nil
	}
	nc := *cfg.Notify
	if nc.Now == nil {
		nc.Now = time.Now
	}
	templates, err := notify.LoadTemplates(nc.Templates)
	if err != nil {
		return nil, err
	}
	sealer, err := notify.NewSealer(cfg.Master)
	if err != nil {
		return nil, err
	}
	n := &notifications{db: db, cfg: nc}
	senders := map[string]notify.Sender{}
	if nc.Email != nil {
		senders["email"], n.mail = nc.Email, true
	}
	if nc.SMS != nil {
		senders["sms"] = nc.SMS
		if s, ok := nc.SMS.(*notify.SMS); ok {
			n.sms = s
			s.OnReceipt = func(id string, delivered bool) {
				if delivered {
					go n.delivered("sms", id, cfg.Logger)
				}
			}
		}
	}
	if nc.Push {
		if n.vapid, err = notify.DeriveVAPID(cfg.Master); err != nil {
			return nil, err
		}
		senders["push"] = notify.Push{VAPID: n.vapid, Subscriber: nc.PushContact, Client: nc.PushClient}
	}
	enabled := map[string]bool{}
	for ch := range senders {
		enabled[ch] = true
	}
	n.decider = notify.Decider{Templates: templates, Sealer: sealer, Language: cfg.notifyLanguage(), PortalURL: nc.PortalURL,
		Enabled: enabled, Now: nc.Now}
	n.notifier = &notify.Notifier{DB: db, Decider: n.decider, Reminders: nc.Reminders, PrescriptionNotice: nc.PrescriptionNotice,
		Idle: nc.Idle, Logger: cfg.Logger}
	n.dispatcher = &notify.Dispatcher{DB: db, Sealer: sealer, Senders: senders, Retry: nc.Retry, Trip: nc.Trip, Open: nc.Open,
		Lease: nc.Lease, Idle: nc.Idle, Now: nc.Now, Logger: cfg.Logger,
		OnGone: func(ctx context.Context, endpoint string) {
			if err := db.DropPushEndpoint(ctx, endpoint); err != nil {
				cfg.Logger.Warn("dropping a gone push subscription failed", "err", err)
			}
		}}
	return n, nil
}

// delivered records a delivery receipt. A receipt may come before the
// dispatcher has recorded the provider's id (the gateway answers the
// submit and sends the receipt at once): it is tried again for a while.
func (n *notifications) delivered(channel, providerID string, logger *slog.Logger) {
	for wait := 50 * time.Millisecond; wait < 30*time.Second; wait *= 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, err := n.db.NotificationDelivered(ctx, channel, providerID, n.cfg.Now())
		cancel()
		if ok {
			return
		}
		if err != nil {
			logger.Warn("recording a delivery receipt failed", "channel", channel, "message", providerID, "err", err)
		}
		time.Sleep(wait)
	}
	logger.Warn("a delivery receipt matches no notification sent", "channel", channel, "message", providerID)
}

// run starts the notifier and the dispatcher until ctx ends.
func (n *notifications) run(ctx context.Context) {
	go n.notifier.Run(ctx)
	go n.dispatcher.Run(ctx)
}

// close unbinds from the SMS gateway.
func (n *notifications) close() {
	if n.sms != nil {
		_ = n.sms.Close()
	}
}

// desk is what the edge serves of notifications (nil: those routes 503).
func (n *notifications) desk(db *persistence.DB) edge.Notifications {
	if n == nil {
		return nil
	}
	return db
}

func (n *notifications) vapidPublic() string {
	if n == nil {
		return ""
	}
	return n.vapid.Public
}

func (n *notifications) reminders() []int32 {
	if n == nil || len(n.cfg.Reminders) == 0 {
		return notify.DefaultReminders
	}
	return n.cfg.Reminders
}

// register exports the channels' figures: sent, failed, retried, dead,
// deferred per channel on this member, each breaker's state, and the
// queues (waiting, age of the oldest due, dead) from the database.
func (n *notifications) register(reg prometheus.Registerer) {
	for _, ch := range notify.Channels {
		labels := prometheus.Labels{"channel": ch}
		st := n.dispatcher.Stats(ch)
		for _, c := range []struct {
			name, help string
			get        func() int64
		}{
			{"caregrid_notifications_sent_total", "Notifications this member's dispatcher handed to the provider.", st.Sent.Load},
			{"caregrid_notifications_failed_total", "Notification sends that failed (each retried or dead).", st.Failed.Load},
			{"caregrid_notifications_retried_total", "Failed notification sends scheduled again with backoff.", st.Retried.Load},
			{"caregrid_notifications_dead_total", "Notifications whose last try failed (dead letters).", st.Dead.Load},
			{"caregrid_notifications_deferred_total", "Notifications put back untried because the channel's breaker was open.", st.Deferred.Load},
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help, ConstLabels: labels},
				func() float64 { return float64(c.get()) }))
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "caregrid_notifications_breaker_open", ConstLabels: labels,
			Help: "The channel's circuit breaker on this member: 0 closed, 0.5 half-open (probing), 1 open (provider failing; nothing sent)."},
			func() float64 {
				switch n.dispatcher.BreakerState(ch).String() {
				case "open":
					return 1
				case "half-open":
					return 0.5
				}
				return 0
			}))
	}
	reg.MustRegister(&queueCollector{db: n.db, now: n.cfg.Now})
}

// queueCollector reads the notification queues at each scrape.
type queueCollector struct {
	db  *persistence.DB
	now func() time.Time
}

var (
	queueWaiting = prometheus.NewDesc("caregrid_notifications_waiting", "Notifications pending or being sent, by channel (cluster-wide).", []string{"channel"}, nil)
	queueAge     = prometheus.NewDesc("caregrid_notifications_queue_age_seconds", "How long the oldest waiting notification has been due, by channel (0: none overdue).", []string{"channel"}, nil)
	queueDead    = prometheus.NewDesc("caregrid_notifications_dead", "Dead notifications waiting for an operator, by channel (cluster-wide).", []string{"channel"}, nil)
)

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueWaiting
	ch <- queueAge
	ch <- queueDead
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	queues, err := q.db.NotificationQueues(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueWaiting, errors.New("notification queues: database unavailable"))
		return
	}
	now := q.now()
	for _, c := range notify.Channels {
		qu := queues[c]
		age := 0.0
		if !qu.OldestDue.IsZero() && now.After(qu.OldestDue) {
			age = now.Sub(qu.OldestDue).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(queueWaiting, prometheus.GaugeValue, float64(qu.Waiting), c)
		ch <- prometheus.MustNewConstMetric(queueAge, prometheus.GaugeValue, age, c)
		ch <- prometheus.MustNewConstMetric(queueDead, prometheus.GaugeValue, float64(qu.Dead), c)
	}
}
