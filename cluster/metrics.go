package cluster

import (
	"errors"
	"strings"
	"sync"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// CallMetrics count and time the grain requests a node sends (Call), by
// grain kind and outcome: ok, the grain's typed refusal (its ErrorReason
// in lower case: not_found, forbidden, fenced, ...), or unavailable (no
// answer: a timeout, a member unreachable).
type CallMetrics struct {
	Requests *prometheus.CounterVec
	Seconds  *prometheus.HistogramVec
}

// callMetrics holds each cluster's metrics (a process may run several
// members, each with its own registry).
var callMetrics sync.Map // *actorcluster.Cluster -> *CallMetrics

// RegisterCallMetrics counts n's grain requests into reg.
func (n *Node) RegisterCallMetrics(reg prometheus.Registerer) *CallMetrics {
	m := &CallMetrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caregrid_grain_requests_total",
			Help: "Grain requests this node sent, by grain kind and outcome (ok, the grain's refusal reason, or unavailable).",
		}, []string{"kind", "outcome"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caregrid_grain_request_duration_seconds",
			Help:    "Time from sending a grain request to its answer, retries included, by grain kind.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"kind"}),
	}
	reg.MustRegister(m.Requests, m.Seconds)
	callMetrics.Store(n.Cluster, m)
	return m
}

func observeCall(c *actorcluster.Cluster, kind string, started time.Time, err error) {
	v, ok := callMetrics.Load(c)
	if !ok {
		return
	}
	m := v.(*CallMetrics)
	m.Requests.WithLabelValues(kind, outcomeOf(err)).Inc()
	m.Seconds.WithLabelValues(kind).Observe(time.Since(started).Seconds())
}

func outcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	var ge *actorcluster.GrainErrorResponse
	if errors.As(err, &ge) && ge.Reason != "" {
		return strings.ToLower(ge.Reason)
	}
	return "unavailable"
}
