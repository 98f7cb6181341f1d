package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/google/uuid"
)

// keySpace is the real Redis limiter with keys of the test's own: Redis
// keeps budgets between runs, and every test signs in from 127.0.0.1.
type keySpace struct {
	ratelimit.Limiter
	prefix string
}

func (k keySpace) Allow(ctx context.Context, key string, limit ratelimit.Limit) (ratelimit.Decision, error) {
	return k.Limiter.Allow(ctx, k.prefix+key, limit)
}

// throttledPair is two nodes' login pages on one database and one Redis,
// with the provider's default throttle and lock.
type throttledPair struct {
	is    *identityServer
	other string // the second node's base URL
}

func startThrottledPair(t *testing.T) throttledPair {
	t.Helper()
	// Each node its own connection: what they share is the Redis server.
	prefix := "test-" + uuid.NewString() + ":"
	is := startIdentityServer(t, func(c *identity.Config) { c.Limiter = keySpace{Limiter: testRedis(t), prefix: prefix} })
	p, err := identity.New(identity.Config{DB: is.db, Seal: testMaster, Issuer: is.issuer, Limiter: keySpace{Limiter: testRedis(t), prefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	srv := edge.New(edge.Config{Mounts: []edge.Mount{{Prefix: identity.PathPrefix, Handler: p.Handler()}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.App().Listener(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return throttledPair{is: is, other: "http://" + ln.Addr().String()}
}

// attempt signs in as username with password, on the first node when
// first is set and on the second otherwise (the login page comes from the
// first; the form goes to the node chosen).
func (tp throttledPair) attempt(t *testing.T, first bool, username, password string) page {
	t.Helper()
	b := newBrowser(t)
	p, _, _ := tp.is.login(b)
	if !first {
		p.url = strings.Replace(p.url, tp.is.base, tp.other, 1)
	}
	return b.submit(p, map[string]string{"username": username, "password": password})
}

// untilThrottled makes attempts (try answers the status of the i-th)
// until one is refused with 429, and checks that a budget of perMinute a
// minute, a burst of as many, allowed what it should: at least the burst,
// and no more than the burst plus what refilled (perMinute a minute) while
// the attempts ran, however slow the machine.
func untilThrottled(t *testing.T, perMinute int, try func(i int) int) {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		st := try(i)
		if st == http.StatusTooManyRequests {
			refilled := int(time.Since(start) * time.Duration(perMinute) / time.Minute)
			if i < perMinute || i > perMinute+refilled+1 {
				t.Fatalf("%d attempts allowed in %v before a 429, want %d (the burst) to %d (with what refilled)", i, time.Since(start), perMinute, perMinute+refilled+1)
			}
			t.Logf("%d attempts allowed in %v, then 429", i, time.Since(start).Round(time.Millisecond))
			return
		}
		if st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401 until the budget is spent", i+1, st)
		}
		if i > 3*perMinute {
			t.Fatalf("%d attempts and no 429", i+1)
		}
	}
}

// TestLoginThrottleDefaultsAreSharedThroughRedis: with the defaults, an
// account gets 5 attempts a minute and an address 30, counted across the
// nodes through Redis, and the 10th failure in a row locks the account for
// 15 minutes.
func TestLoginThrottleDefaultsAreSharedThroughRedis(t *testing.T) {
	t.Run("5 a minute per account", func(t *testing.T) {
		tp := startThrottledPair(t)
		tp.is.account(uuid.NewString(), "clerk-ana", "receptionist", "right-password-1", false)
		untilThrottled(t, 5, func(i int) int { return tp.attempt(t, i%2 == 0, "clerk-ana", "wrong-password-0").status })
		for _, first := range []bool{true, false} {
			r := tp.attempt(t, first, "clerk-ana", "right-password-1")
			if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
				t.Fatalf("the right password once the budget is spent (first node %v): %d, want 429 with Retry-After", first, r.status)
			}
		}
		if r := tp.attempt(t, false, "clerk-vera", "any-password-12"); r.status != http.StatusUnauthorized {
			t.Fatalf("another account from the same address: %d, want 401", r.status)
		}
	})
	t.Run("30 a minute per address", func(t *testing.T) {
		tp := startThrottledPair(t)
		untilThrottled(t, 30, func(i int) int {
			return tp.attempt(t, i%2 == 0, "nobody-"+uuid.NewString()[:8], "any-password-12").status
		})
	})
	t.Run("locked after 10 failures for 15 minutes", func(t *testing.T) {
		tp := startThrottledPair(t)
		id := uuid.NewString()
		tp.is.account(id, "clerk-ion", "receptionist", "right-password-1", false)
		// Eight failures already (the throttle allows 5 a minute: ten in a
		// row take two minutes), then the ninth and the tenth.
		ctx := context.Background()
		if _, err := tp.is.db.Pool.Exec(ctx, `UPDATE accounts SET failed_logins = 8 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if r := tp.attempt(t, true, "clerk-ion", "wrong-password-0"); r.status != http.StatusUnauthorized {
			t.Fatalf("the ninth failure: %d, want 401", r.status)
		}
		if r := tp.attempt(t, false, "clerk-ion", "wrong-password-0"); r.status != http.StatusForbidden || !strings.Contains(r.body, "locked") {
			t.Fatalf("the tenth failure: %d %s, want 403 locked", r.status, r.body)
		}
		var left time.Duration
		if err := tp.is.db.Pool.QueryRow(ctx, `SELECT EXTRACT(EPOCH FROM locked_until - now()) * interval '1 second' FROM accounts WHERE id = $1`, id).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left <= 14*time.Minute || left > 15*time.Minute {
			t.Fatalf("locked for %v more, want 15 minutes from the tenth failure", left)
		}
		if r := tp.attempt(t, true, "clerk-ion", "right-password-1"); r.status != http.StatusForbidden {
			t.Fatalf("the right password while locked: %d, want 403", r.status)
		}
	})
}
