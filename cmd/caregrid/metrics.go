package main

import (
	"regexp"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// mapCounter exports counts kept as a map, keyed by label values joined
// with "/" (in label order), as one counter per key.
type mapCounter struct {
	desc   *prometheus.Desc
	labels int
	read   func() map[string]int64
}

func newMapCounter(name, help string, labels []string, read func() map[string]int64) *mapCounter {
	return &mapCounter{desc: prometheus.NewDesc(name, help, labels, nil), labels: len(labels), read: read}
}

func (m *mapCounter) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *mapCounter) Collect(ch chan<- prometheus.Metric) {
	for key, n := range m.read() {
		values := strings.SplitN(key, "/", m.labels)
		for len(values) < m.labels {
			values = append(values, "")
		}
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(n), values...)
	}
}

// nodeRegistry is a node's metrics registry that remembers the name of
// every metric registered through it, including those with no series yet
// (a vector no event has touched): the monitoring rules and dashboard are
// checked against these names.
type nodeRegistry struct {
	*prometheus.Registry
	mu    sync.Mutex
	names map[string]bool
}

func newNodeRegistry() *nodeRegistry {
	return &nodeRegistry{Registry: prometheus.NewRegistry(), names: map[string]bool{}}
}

func (r *nodeRegistry) Register(c prometheus.Collector) error {
	r.record(c)
	return r.Registry.Register(c)
}

func (r *nodeRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.record(c)
	}
	r.Registry.MustRegister(cs...)
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *nodeRegistry) record(c prometheus.Collector) {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
}

// Names are the names of the metrics registered through r.
func (r *nodeRegistry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	return out
}
