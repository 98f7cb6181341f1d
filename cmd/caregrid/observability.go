package main

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// countedLogins counts login attempts by outcome (success, failed,
// denied) on their way to the audit trail.
type countedLogins struct {
	identity.Events
	logins *prometheus.CounterVec
}

func newCountedLogins(e identity.Events, reg prometheus.Registerer) countedLogins {
	c := countedLogins{Events: e, logins: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caregrid_logins_total", Help: "Login attempts at this node's login pages, by outcome (success, failed, denied).",
	}, []string{"outcome"})}
	for _, o := range []string{"success", "failed", "denied"} {
		c.logins.WithLabelValues(o) // present at 0 from the start, for rates and alerts
	}
	reg.MustRegister(c.logins)
	return c
}

func (c countedLogins) Login(ctx context.Context, e identity.LoginEvent) error {
	if e.Action == messages.AuditAction_AUDIT_ACTION_UNSPECIFIED || e.Action == messages.AuditAction_AUDIT_ACTION_LOGIN {
		c.logins.WithLabelValues(e.Outcome).Inc()
	}
	return c.Events.Login(ctx, e)
}

// auditCollector reads the audit trail's state from the database at each
// scrape: events waiting to be chained, and the latest check of the trail.
type auditCollector struct{ db *persistence.DB }

var (
	auditPending      = prometheus.NewDesc("caregrid_audit_pending_events", "Audit events written with their change and not yet chained (cluster-wide).", nil, nil)
	auditPendingAge   = prometheus.NewDesc("caregrid_audit_pending_age_seconds", "Age of the oldest audit event waiting to be chained (0: none): how far the chain trails.", nil, nil)
	auditTrailIntact  = prometheus.NewDesc("caregrid_audit_trail_intact", "1 when the latest check of the audit trail found every chain and checkpoint intact, 0 when it did not hold or could not finish, -1 before any check.", nil, nil)
	auditTrailChecked = prometheus.NewDesc("caregrid_audit_trail_checked_timestamp_seconds", "When the latest finished check of the audit trail started (Unix time; 0: none yet).", nil, nil)
	auditTrailEvents  = prometheus.NewDesc("caregrid_audit_trail_checked_events", "Events the latest finished check of the audit trail went through.", nil, nil)
)

func (a auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{auditPending, auditPendingAge, auditTrailIntact, auditTrailChecked, auditTrailEvents} {
		ch <- d
	}
}

func (a auditCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n, age, err := a.db.AuditPendingBacklog(ctx, time.Now()); err == nil {
		ch <- prometheus.MustNewConstMetric(auditPending, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(auditPendingAge, prometheus.GaugeValue, age.Seconds())
	}
	v, err := a.db.LastFinishedAuditVerification(ctx)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		ch <- prometheus.MustNewConstMetric(auditTrailIntact, prometheus.GaugeValue, -1)
		ch <- prometheus.MustNewConstMetric(auditTrailChecked, prometheus.GaugeValue, 0)
		ch <- prometheus.MustNewConstMetric(auditTrailEvents, prometheus.GaugeValue, 0)
	case err == nil:
		intact := 0.0
		if v.Status == persistence.VerificationIntact {
			intact = 1
		}
		ch <- prometheus.MustNewConstMetric(auditTrailIntact, prometheus.GaugeValue, intact)
		ch <- prometheus.MustNewConstMetric(auditTrailChecked, prometheus.GaugeValue, float64(v.StartedAt.Unix()))
		ch <- prometheus.MustNewConstMetric(auditTrailEvents, prometheus.GaugeValue, float64(v.Events))
	}
}

// memberStats answers the figures of this node's last minute for the
// cluster dashboard (the member's status): rates come from counters'
// differences across the window, the p99 from the histogram buckets'
// differences. It samples the registry when asked, at most every few
// seconds: a node nobody watches pays nothing (the dashboard asks every
// 2 s, and its first look has no rates yet).
type memberStats struct {
	reg   prometheus.Gatherer
	every time.Duration

	mu      sync.Mutex
	samples []statSample // oldest first, at most a window's worth
	gauges  map[string]float64
}

// statsWindow is the span the dashboard's rates and p99 cover.
const statsWindow = time.Minute

type statSample struct {
	at       time.Time
	requests float64
	errors   float64             // 5xx answers
	buckets  map[float64]float64 // request duration: upper bound -> cumulative count
	grains   float64
	grainErr float64 // grain requests unanswered
}

// gaugeStats are the registry's gauges the dashboard shows as they are,
// summed over their labels, under the stat's name.
var gaugeStats = map[string]string{
	"caregrid_outbox_relay_lag_seconds":   "outbox_lag_seconds",
	"caregrid_audit_pending_events":       "audit_pending",
	"caregrid_audit_pending_age_seconds":  "audit_pending_age_seconds",
	"caregrid_notifications_waiting":      "notifications_waiting",
	"caregrid_notifications_dead":         "notifications_dead",
	"caregrid_notifications_breaker_open": "notifications_breakers_open",
	"caregrid_db_pool_acquired_conns":     "db_pool_acquired",
	"caregrid_db_pool_max_conns":          "db_pool_max",
	"caregrid_cluster_members":            "members_seen",
	"go_goroutines":                       "goroutines",
	"process_resident_memory_bytes":       "memory_bytes",
}

func newMemberStats(reg prometheus.Gatherer) *memberStats {
	return &memberStats{reg: reg, every: time.Second}
}

// current samples when the last sample is older than every, then answers
// the figures.
func (m *memberStats) current() map[string]float64 {
	m.mu.Lock()
	stale := len(m.samples) == 0 || time.Since(m.samples[len(m.samples)-1].at) >= m.every
	m.mu.Unlock()
	if stale {
		m.sample(time.Now())
	}
	return m.stats()
}

func (m *memberStats) sample(now time.Time) {
	families, _ := m.reg.Gather() // a failing collector leaves the others
	s := statSample{at: now, buckets: map[float64]float64{}}
	gauges := map[string]float64{}
	for _, f := range families {
		name := f.GetName()
		for _, metric := range f.GetMetric() {
			switch name {
			case "caregrid_http_requests_total":
				v := metric.GetCounter().GetValue()
				s.requests += v
				if status := label(metric, "status"); len(status) == 3 && status[0] == '5' {
					s.errors += v
				}
			case "caregrid_http_request_duration_seconds":
				for _, b := range metric.GetHistogram().GetBucket() {
					s.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			case "caregrid_grain_requests_total":
				v := metric.GetCounter().GetValue()
				s.grains += v
				if label(metric, "outcome") == "unavailable" {
					s.grainErr += v
				}
			}
			if stat, ok := gaugeStats[name]; ok {
				gauges[stat] += metric.GetGauge().GetValue()
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, s)
	for len(m.samples) > 1 && now.Sub(m.samples[1].at) >= statsWindow {
		m.samples = m.samples[1:]
	}
	m.gauges = gauges
}

// stats are the figures over the window the samples span.
func (m *memberStats) stats() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]float64{}
	for k, v := range m.gauges {
		out[k] = v
	}
	if len(m.samples) < 2 {
		return out
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	secs := last.at.Sub(first.at).Seconds()
	out["window_seconds"] = secs
	out["request_rate"] = (last.requests - first.requests) / secs
	out["error_rate"] = (last.errors - first.errors) / secs
	out["grain_request_rate"] = (last.grains - first.grains) / secs
	out["grain_unavailable_rate"] = (last.grainErr - first.grainErr) / secs
	if p, ok := quantile(0.99, first.buckets, last.buckets); ok {
		out["p99_seconds"] = p
	}
	return out
}

// quantile estimates the q-quantile of the observations made between two
// readings of a cumulative histogram, as Prometheus's histogram_quantile
// does (linear within the bucket); false without observations.
func quantile(q float64, before, after map[float64]float64) (float64, bool) {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, false
	}
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	lower, prev := 0.0, 0.0
	for _, b := range bounds {
		n := after[b] - before[b]
		if n >= rank {
			if math.IsInf(b, 1) {
				return lower, true // beyond the last bound: its lower edge
			}
			return lower + (b-lower)*(rank-prev)/math.Max(n-prev, 1e-9), true
		}
		lower, prev = b, n
	}
	return lower, true
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
