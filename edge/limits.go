package edge

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/gofiber/fiber/v2"
)

// RateLimits are the API's request budgets. Each is taken per source
// address before authentication (so unauthenticated floods are cut early)
// and per subject after it. A zero Rate turns that budget off.
type RateLimits struct {
	Limiter    ratelimit.Limiter
	PerAddress ratelimit.Limit
	PerSubject ratelimit.Limit
}

// DefaultRateLimits suit a hospital whose staff share one NAT address:
// the per-address budget is wide, the per-subject one is what a person or
// a single integration needs (a service client with more traffic gets a
// higher budget from its operator).
var DefaultRateLimits = RateLimits{
	PerAddress: ratelimit.Limit{Rate: 500, Burst: 1000, Period: time.Second},
	PerSubject: ratelimit.Limit{Rate: 50, Burst: 100, Period: time.Second},
}

// ParseLimit reads "N/s", "N/m" or "N/h" (burst 2N), or "0" for off.
func ParseLimit(s string) (ratelimit.Limit, error) {
	if s == "0" || s == "off" {
		return ratelimit.Limit{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	rate, err := strconv.Atoi(n)
	periods := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}
	if !ok || err != nil || rate <= 0 || periods[unit] == 0 {
		return ratelimit.Limit{}, fmt.Errorf("rate limit %q: want N/s, N/m, N/h or 0", s)
	}
	return ratelimit.Limit{Rate: rate, Burst: 2 * rate, Period: periods[unit]}, nil
}

// unlimited paths: probes and scrapes must not be starved by API traffic.
var unlimited = map[string]bool{"/livez": true, "/readyz": true, "/metrics": true}

// limitAddress takes one request from the caller's address budget.
func (s *Server) limitAddress(c *fiber.Ctx) error {
	if s.cfg.RateLimits == nil || s.cfg.RateLimits.PerAddress.Rate == 0 || unlimited[c.Path()] {
		return c.Next()
	}
	if err := s.takeBudget(c, "api:addr:"+c.IP(), s.cfg.RateLimits.PerAddress); err != nil {
		return err
	}
	return c.Next()
}

// limitSubject takes one request from the authenticated caller's budget.
func (s *Server) limitSubject(c *fiber.Ctx) error {
	if s.cfg.RateLimits == nil || s.cfg.RateLimits.PerSubject.Rate == 0 {
		return c.Next()
	}
	p, _ := c.Locals(principalKey).(Principal)
	if err := s.takeBudget(c, "api:sub:"+p.Subject, s.cfg.RateLimits.PerSubject); err != nil {
		return err
	}
	return c.Next()
}

// takeBudget sets the RateLimit-* headers and refuses with 429 when the
// budget is spent. A limiter that cannot answer lets the request through:
// the limits protect capacity, they are not an access control, and a Redis
// outage must not stop a hospital's work. Each such pass is counted.
func (s *Server) takeBudget(c *fiber.Ctx, key string, limit ratelimit.Limit) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 200*time.Millisecond)
	defer cancel()
	d, err := s.cfg.RateLimits.Limiter.Allow(ctx, key, limit)
	if err != nil {
		s.metrics.limiterErrors.Inc()
		return nil
	}
	c.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	c.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
	c.Set("RateLimit-Reset", strconv.Itoa(int((d.ResetAfter+time.Second-1)/time.Second)))
	if d.Allowed {
		return nil
	}
	s.metrics.limited.Inc()
	retry := max(int((d.RetryAfter+time.Second-1)/time.Second), 1)
	p := problem(fiber.StatusTooManyRequests, "rate-limited", "Too many requests",
		fmt.Sprintf("the request budget (%d per %s) is spent; retry after %d s", limit.Rate, limit.Period, retry))
	p.retryAfter = strconv.Itoa(retry)
	return p
}
