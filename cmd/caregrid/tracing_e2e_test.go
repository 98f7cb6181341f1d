package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caregrid/caregrid/internal/tracing"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver: what a node exports, decoded
// from the wire as a real collector would.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startCollector(t *testing.T) (*collector, string) {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// TestTracesFromTheEdgeThroughGrainsToSQL: with an OTLP endpoint, a
// request that comes with a W3C traceparent is one trace: the edge's span
// (named by its route template) under the caller's, the grain's span under
// the edge's across remoting, and the grain's SQL statements under the
// grain's; no span names the patient's id or carries a statement's values.
func TestTracesFromTheEdgeThroughGrainsToSQL(t *testing.T) {
	col, url := startCollector(t)
	ctx := context.Background()
	shutdown, err := tracing.Setup(ctx, tracing.Config{Endpoint: url, Service: "caregrid-test", Instance: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	persistence.Traced.Store(true)
	t.Cleanup(func() {
		persistence.Traced.Store(false)
		otel.SetTracerProvider(noop.NewTracerProvider())
	})
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.Tracing = true })
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := s.do("POST", "/v1/patients", desk, patientBody("2005042129809"), "traceparent", "00-"+traceID+"-"+parentID+"-01")
	expect(t, "register", r, 201)
	patientID := r.json(t)["id"].(string)
	// The grain's span ends as its handler returns, just after it replied:
	// a second request to the same grain is handled only after that.
	expect(t, "read", s.do("GET", "/v1/patients/"+patientID, desk, nil), 200)
	if err := shutdown(ctx); err != nil { // flushes every span
		t.Fatal(err)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	byID := map[string]*tracepb.Span{}
	var edgeSpan, grainSpan *tracepb.Span
	var sql []*tracepb.Span
	for _, sp := range col.spans {
		if hex.EncodeToString(sp.TraceId) != traceID {
			continue
		}
		byID[hex.EncodeToString(sp.SpanId)] = sp
		switch {
		case sp.Name == "POST /v1/patients":
			edgeSpan = sp
		case sp.Name == "Patient.Register":
			grainSpan = sp
		}
		for _, a := range sp.Attributes {
			if v := a.Value.GetStringValue(); strings.Contains(v, patientID) || strings.Contains(v, "2005042129809") || strings.Contains(sp.Name, patientID) {
				t.Errorf("span %q carries the patient's id or IDNP in %s", sp.Name, a.Key)
			}
		}
	}
	if edgeSpan == nil || grainSpan == nil {
		var names []string
		for _, sp := range col.spans {
			names = append(names, sp.Name)
		}
		t.Fatalf("in trace %s: edge span %v, grain span %v; spans received: %v", traceID, edgeSpan != nil, grainSpan != nil, names)
	}
	if hex.EncodeToString(edgeSpan.ParentSpanId) != parentID {
		t.Errorf("the edge's span's parent is %x, not the caller's %s", edgeSpan.ParentSpanId, parentID)
	}
	if string(grainSpan.ParentSpanId) != string(edgeSpan.SpanId) {
		t.Errorf("the grain's span's parent is %x, not the edge's %x", grainSpan.ParentSpanId, edgeSpan.SpanId)
	}
	for _, sp := range byID {
		if string(sp.ParentSpanId) == string(grainSpan.SpanId) && sp.Name != "" && sp.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			sql = append(sql, sp)
		}
	}
	if len(sql) == 0 {
		t.Fatalf("no SQL span under the grain's span")
	}
	t.Logf("trace %s: %d spans, %d SQL statements under %s", traceID, len(byID), len(sql), grainSpan.Name)
}
