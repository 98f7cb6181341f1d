package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metricsql"
	"github.com/caregrid/caregrid/messages"
	"go.yaml.in/yaml/v3"
)

// TestMonitoringUsesExportedMetrics: every expression in the Prometheus
// alert rules and the Grafana dashboard (deploy/monitoring) parses as
// PromQL, and every metric it names is one a node exports: in /metrics
// after some traffic, or registered with no series yet (a vector no event
// has touched). Only Prometheus's own up is allowed besides.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("2005042129809"))
	expect(t, "register", r, 201)
	expect(t, "read", s.do("GET", "/v1/patients/"+r.json(t)["id"].(string), desk, nil), 200)

	exported := map[string]bool{"up": true}
	for _, n := range s.node.registry.Names() {
		exported[n] = true
	}
	typeLine := regexp.MustCompile(`^# TYPE (\S+) (\S+)`)
	for _, line := range strings.Split(string(s.do("GET", "/metrics", "", nil).body), "\n") {
		if m := typeLine.FindStringSubmatch(line); m != nil {
			exported[m[1]] = true
		}
	}
	for name := range exported { // a histogram's series
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			exported[name+suffix] = true
		}
	}

	var exprs []string
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	raw, err := os.ReadFile("../../deploy/monitoring/caregrid-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("a rule without a name or an expression: %+v", r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	raw, err = os.ReadFile("../../deploy/monitoring/caregrid-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 30 {
		t.Fatalf("only %d expressions read", len(exprs))
	}
	var used []string
	for _, e := range exprs {
		parsed, err := metricsql.Parse(e)
		if err != nil {
			t.Errorf("%q does not parse: %v", e, err)
			continue
		}
		metricsql.VisitAll(parsed, func(x metricsql.Expr) {
			me, ok := x.(*metricsql.MetricExpr)
			if !ok {
				return
			}
			for _, lfs := range me.LabelFilterss {
				for _, lf := range lfs {
					if lf.Label == "__name__" && !slices.Contains(used, lf.Value) {
						used = append(used, lf.Value)
					}
				}
			}
		})
	}
	for _, name := range used {
		if !exported[name] {
			t.Errorf("deploy/monitoring uses %s, which the node does not export", name)
		}
	}
	if len(used) < 20 {
		t.Fatalf("only %d metric names found in the rules and dashboard: %v", len(used), used)
	}
}
