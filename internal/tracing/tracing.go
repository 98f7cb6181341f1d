// Package tracing is caregrid's OpenTelemetry tracing: off unless an OTLP
// endpoint is configured, then one trace per request from the edge
// through every grain it calls to the SQL those grains run. The trace
// context crosses remoting in the request's Caller (traceparent, W3C
// Trace Context), as HTTP carries it in a header.
//
// Spans carry route templates, grain kinds, message types and SQL
// statements, never a statement's values, a path's ids or a body: traces
// leave the hospital's trust boundary for a collector.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of caregrid's own spans.
const Name = "github.com/caregrid/caregrid"

// Config configures the exporter.
type Config struct {
	// Endpoint is the OTLP/HTTP collector, such as
	// http://otel-collector:4318 (traces go to its /v1/traces unless the
	// URL names a path); "" turns tracing off.
	Endpoint string
	// Service and Instance name this node in the traces.
	Service, Instance string
	// Sample is the share of new traces recorded (0: 1.0, all); a trace
	// begun by the caller follows the caller's choice.
	Sample float64
}

// Propagator reads and writes W3C trace context.
var Propagator = propagation.TraceContext{}

// Setup installs the exporter as the process's tracer provider and
// returns what flushes and stops it. With no endpoint it does nothing.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if cfg.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: the OTLP endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	ratio := cfg.Sample
	if ratio <= 0 {
		ratio = 1
	}
	res := resource.NewSchemaless(attribute.String("service.name", cfg.Service), attribute.String("service.instance.id", cfg.Instance))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	return tp.Shutdown, nil
}

// Tracer is caregrid's tracer (the global provider's: a no-op one while
// tracing is off).
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Traceparent is the W3C traceparent of ctx's span ("" without one), to
// carry in a grain request's Caller.
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	Propagator.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// FromTraceparent is ctx continuing the trace a traceparent names.
func FromTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// current is the span context of the request each actor is handling now,
// by actor (its PID): an actor handles one message at a time, and its
// store calls, made without the request's context, start from this one.
var current sync.Map // string -> context.Context

// Enter records ctx as the request actor is handling; Leave forgets it.
func Enter(actor string, ctx context.Context) { current.Store(actor, ctx) }

// Leave forgets actor's request.
func Leave(actor string) { current.Delete(actor) }

// Background is context.Background carrying the span of the request actor
// is handling (none: context.Background itself), for the store calls it
// makes with a deadline of its own.
func Background(actor string) context.Context {
	if v, ok := current.Load(actor); ok {
		return trace.ContextWithSpan(context.Background(), trace.SpanFromContext(v.(context.Context)))
	}
	return context.Background()
}
