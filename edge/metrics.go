package edge

import (
	"strconv"
	"time"

	"github.com/caregrid/caregrid/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type httpMetrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	limited       prometheus.Counter
	limiterErrors prometheus.Counter
}

func newHTTPMetrics(reg *prometheus.Registry) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caregrid_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caregrid_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "caregrid_http_rate_limited_total",
			Help: "Requests refused with 429 because a rate limit was spent.",
		}),
		limiterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "caregrid_http_rate_limiter_errors_total",
			Help: "Requests let through unlimited because the rate limiter (Redis) did not answer.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.limited, m.limiterErrors)
	return m
}

// observe counts and times every request under its route template (never
// the raw path, which would carry patient ids into metrics).
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		// Write the problem now so the status we record is the one sent.
		_ = s.app.Config().ErrorHandler(c, err)
		err = nil
	}
	route := c.Route().Path
	if route == "/" && c.Path() != "/" {
		route = "unmatched"
	}
	s.metrics.requests.WithLabelValues(route, c.Method(), strconv.Itoa(c.Response().StatusCode())).Inc()
	s.metrics.duration.WithLabelValues(route, c.Method()).Observe(time.Since(start).Seconds())
	return err
}

func (s *Server) metricsHandler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{}))
}

// traceRequest makes each request a span (continuing a caller's W3C
// trace context), named by its route template, never its path (ids), and
// hands it to the handler as the request's context: the grain calls and
// the SQL it leads to join the trace.
func (s *Server) traceRequest(c *fiber.Ctx) error {
	carrier := propagation.MapCarrier{}
	if tp := c.Get("traceparent"); tp != "" {
		carrier["traceparent"] = tp
		carrier["tracestate"] = c.Get("tracestate")
	}
	ctx := tracing.Propagator.Extract(c.UserContext(), carrier)
	ctx, span := tracing.Tracer().Start(ctx, c.Method(), trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	c.SetUserContext(ctx)
	err := c.Next()
	if err != nil {
		// Write the problem now so the status recorded is the one sent.
		_ = s.app.Config().ErrorHandler(c, err)
		err = nil
	}
	route := c.Route().Path
	status := c.Response().StatusCode()
	span.SetName(c.Method() + " " + route)
	span.SetAttributes(attribute.String("http.request.method", c.Method()), attribute.String("http.route", route),
		attribute.Int("http.response.status_code", status), attribute.String("caregrid.request_id", c.GetRespHeader(fiber.HeaderXRequestID)))
	if status >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(status))
	}
	return err
}
