package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestTraceparentCrossesAsText(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := FromTraceparent(context.Background(), tp)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("span context = %+v", sc)
	}
	if got := Traceparent(ctx); got != tp {
		t.Fatalf("Traceparent = %q, want %q", got, tp)
	}
	if Traceparent(context.Background()) != "" || FromTraceparent(context.Background(), "garbage") == nil {
		t.Fatal("no span: no traceparent")
	}
	Enter("actor-1", ctx)
	if trace.SpanContextFromContext(Background("actor-1")).TraceID() != sc.TraceID() {
		t.Fatal("Background does not carry the actor's request")
	}
	Leave("actor-1")
	if trace.SpanContextFromContext(Background("actor-1")).IsValid() {
		t.Fatal("Background carries a request the actor left")
	}
}

func TestSetupRefusesABadEndpoint(t *testing.T) {
	for _, e := range []string{"collector:4318", "ftp://x", "http://"} {
		if _, err := Setup(context.Background(), Config{Endpoint: e}); err == nil {
			t.Errorf("%q accepted", e)
		}
	}
	stop, err := Setup(context.Background(), Config{})
	if err != nil || stop(context.Background()) != nil {
		t.Fatalf("off: %v", err)
	}
}
