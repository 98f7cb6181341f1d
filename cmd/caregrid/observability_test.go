package main

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMemberStatsOverTheWindow: the dashboard's rates and p99 come from
// the differences between the window's first and last samples, as
// Prometheus's rate and histogram_quantile compute them.
func TestMemberStatsOverTheWindow(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caregrid_http_requests_total"}, []string{"route", "method", "status"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "caregrid_http_request_duration_seconds",
		Buckets: []float64{.01, .1, 1}}, []string{"route", "method"})
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "caregrid_outbox_relay_lag_seconds"})
	reg.MustRegister(requests, duration, lag)
	// Before the window: slow requests that must not count.
	for range 100 {
		requests.WithLabelValues("/a", "GET", "200").Inc()
		duration.WithLabelValues("/a", "GET").Observe(0.5)
	}
	m := newMemberStats(reg)
	t0 := time.Now()
	m.sample(t0)
	for range 190 {
		requests.WithLabelValues("/a", "GET", "200").Inc()
		duration.WithLabelValues("/a", "GET").Observe(0.005)
	}
	for range 10 {
		requests.WithLabelValues("/b", "POST", "503").Inc()
		duration.WithLabelValues("/b", "POST").Observe(0.05)
	}
	lag.Set(2.5)
	m.sample(t0.Add(10 * time.Second))
	st := m.stats()
	if st["request_rate"] != 20 || st["error_rate"] != 1 || st["outbox_lag_seconds"] != 2.5 {
		t.Fatalf("stats = %v", st)
	}
	// 200 observations in the window, 190 at or under 10 ms: the 198th
	// lies in (0.01, 0.1], 8 of its 10 in: 0.01 + 0.09*8/10.
	if p := st["p99_seconds"]; math.Abs(p-0.082) > 1e-9 {
		t.Fatalf("p99 = %v, want 0.082", p)
	}
	// Samples older than the window drop out.
	m.sample(t0.Add(statsWindow + 11*time.Second))
	if st := m.stats(); st["request_rate"] != 0 || st["window_seconds"] != float64(statsWindow/time.Second)+1 {
		t.Fatalf("after a quiet minute: %v", st)
	}
}
