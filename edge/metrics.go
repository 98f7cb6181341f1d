package edge

import (
	"strconv"
	"time"

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
