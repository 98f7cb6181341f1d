package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
)

func testRedis(t *testing.T) *ratelimit.Redis {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	r, closeRedis, err := ratelimit.NewRedis(context.Background(), url)
	if err != nil {
		t.Fatalf("Redis at %s: %v (start it, or set REDIS_URL)", url, err)
	}
	t.Cleanup(func() { _ = closeRedis() })
	return r
}

// Two edges share one Redis: a subject's budget spent on one is spent on
// both. (The second edge has no cluster behind it: /v1/me needs none.)
func TestRateLimitsAreSharedAcrossNodesAndAnswer429(t *testing.T) {
	// (The address budget is off here: every test shares 127.0.0.1 and Redis keeps budgets between runs.)
	limits := &edge.RateLimits{Limiter: testRedis(t), PerSubject: ratelimit.Limit{Rate: 1, Burst: 3, Period: time.Minute}}
	a := startTestServerWithLimits(t, limits)
	b := startBareEdge(t, a, limits)
	// Keys are per subject and address; a fresh subject keeps runs apart.
	sub := uuid.NewString()
	tok := a.token(messages.Role_ROLE_ADMIN, sub)
	for i, s := range []*testServer{a, b, a} {
		r := s.do("GET", "/v1/me", tok, nil)
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i+1, r.status, r.body)
		}
		if got := r.header.Get("RateLimit-Remaining"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: RateLimit-Remaining %q, want %d", i+1, got, 2-i)
		}
		if r.header.Get("RateLimit-Limit") != "1" || r.header.Get("RateLimit-Reset") == "" {
			t.Errorf("request %d: RateLimit-Limit %q, RateLimit-Reset %q", i+1, r.header.Get("RateLimit-Limit"), r.header.Get("RateLimit-Reset"))
		}
	}
	r := b.do("GET", "/v1/me", tok, nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("fourth request: %d (Retry-After %q, %s) %s", r.status, r.header.Get("Retry-After"), r.header.Get("Content-Type"), r.body)
	}
	if p := r.json(t); p["type"] != "/problems/rate-limited" {
		t.Fatalf("problem = %v", p)
	}
	if r := b.do("GET", "/v1/me", a.token(messages.Role_ROLE_ADMIN, uuid.NewString()), nil); r.status != 200 {
		t.Fatalf("another subject: %d", r.status)
	}
	// Probes are never limited.
	for range 10 {
		if r := a.do("GET", "/livez", "", nil); r.status != 200 {
			t.Fatalf("/livez: %d", r.status)
		}
	}
}

func startTestServerWithLimits(t *testing.T, limits *edge.RateLimits) *testServer {
	t.Helper()
	return startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.RateLimits = limits })
}

// startBareEdge serves an edge with no cluster behind it (enough for
// /v1/me) that checks tokens against of's provider, as a second node would.
func startBareEdge(t *testing.T, of *testServer, limits *edge.RateLimits) *testServer {
	t.Helper()
	p, err := identity.New(identity.Config{DB: of.db, Seal: testMaster, Issuer: of.base + identity.PathPrefix})
	if err != nil {
		t.Fatal(err)
	}
	srv := edge.New(edge.Config{Auth: p.Verifier(), RateLimits: limits})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.App().Listener(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return &testServer{t: t, db: of.db, base: "http://" + ln.Addr().String(), tokens: of.tokens}
}

func TestRateLimitPerAddressCoversUnauthenticatedRequests(t *testing.T) {
	s := startTestServerWithLimits(t, &edge.RateLimits{Limiter: ratelimit.NewLocal(10),
		PerAddress: ratelimit.Limit{Rate: 1, Burst: 3, Period: time.Minute}})
	for i := range 3 {
		if r := s.do("GET", "/openapi.json", "", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	if r := s.do("GET", "/v1/patients/"+uuid.NewString(), "", nil); r.status != 429 {
		t.Fatalf("fourth request from the address (no token): %d, want 429 before authentication", r.status)
	}
	if r := s.do("GET", "/readyz", "", nil); r.status != 200 {
		t.Fatalf("/readyz is limited: %d", r.status)
	}
}

// privateRedis runs a redis-server of the test's own on a free loopback
// port (the binary .ci/run installs), so the test can stop it.
func privateRedis(t *testing.T) (url string, stop func()) {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server (install redis-server; .ci/run does): %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	t.Cleanup(stop)
	url = "redis://127.0.0.1:" + port + "/0"
	await.Until(t, "redis-server to answer", 30*time.Second, func() bool {
		_, closeRedis, err := ratelimit.NewRedis(context.Background(), url)
		if err == nil {
			_ = closeRedis()
		}
		return err == nil
	})
	return url, stop
}

// metricValue reads an unlabelled counter or gauge from a node's /metrics.
func metricValue(t *testing.T, s *testServer, name string) float64 {
	t.Helper()
	r := s.do("GET", "/metrics", "", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s = %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestRequestsPassWhileRedisIsDown: the limits protect capacity, not data,
// so a Redis outage does not stop the hospital: requests are served (without
// RateLimit headers, as nothing was counted) and
// caregrid_http_rate_limiter_errors_total counts each unanswered check.
func TestRequestsPassWhileRedisIsDown(t *testing.T) {
	url, stop := privateRedis(t)
	limiter, closeRedis, err := ratelimit.NewRedis(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeRedis() })
	s := startTestServerWithLimits(t, &edge.RateLimits{Limiter: limiter,
		PerAddress: ratelimit.PerMinute(1000), PerSubject: ratelimit.PerMinute(1000)})
	tok := s.token(messages.Role_ROLE_ADMIN, uuid.NewString())
	r := s.do("GET", "/v1/me", tok, nil)
	if r.status != 200 || r.header.Get("RateLimit-Remaining") == "" {
		t.Fatalf("with Redis up: %d, RateLimit-Remaining %q", r.status, r.header.Get("RateLimit-Remaining"))
	}
	before := metricValue(t, s, "caregrid_http_rate_limiter_errors_total")
	stop()
	for i := range 3 {
		r := s.do("GET", "/v1/me", tok, nil)
		if r.status != 200 || r.header.Get("RateLimit-Remaining") != "" {
			t.Fatalf("request %d with Redis down: %d (RateLimit-Remaining %q), want 200 uncounted: %s", i+1, r.status, r.header.Get("RateLimit-Remaining"), r.body)
		}
	}
	// Each request checks its address and its subject: six checks failed.
	if got := metricValue(t, s, "caregrid_http_rate_limiter_errors_total") - before; got != 6 {
		t.Fatalf("caregrid_http_rate_limiter_errors_total rose by %v, want 6 (two checks for each of 3 requests)", got)
	}
}
