package main

import (
	"strings"

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
