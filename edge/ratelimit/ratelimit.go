// Package ratelimit decides whether a caller may make one more attempt:
// login throttling and API rate limits. With Redis (REDIS_URL) the limits
// are shared by every node through redis_rate's GCRA; without it each
// process keeps its own, which is right only for a single node.
package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Limit allows Rate events per Period with bursts of up to Burst.
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// PerMinute is n events a minute, bursts of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Burst: n, Period: time.Minute} }

// Decision is the answer for one event.
type Decision struct {
	Allowed   bool
	Limit     int
	Remaining int
	// RetryAfter is how long to wait before the next event may pass (zero when allowed).
	RetryAfter time.Duration
	// ResetAfter is how long until the limit is fully replenished.
	ResetAfter time.Duration
}

// Limiter takes one event under key against limit.
type Limiter interface {
	Allow(ctx context.Context, key string, limit Limit) (Decision, error)
}

// Redis is a Limiter shared by every node using the same Redis.
type Redis struct{ l *redis_rate.Limiter }

// NewRedis connects to url (redis://host:port/db) and checks it answers.
func NewRedis(ctx context.Context, url string) (*Redis, func() error, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	return &Redis{l: redis_rate.NewLimiter(rdb)}, rdb.Close, nil
}

func (r *Redis) Allow(ctx context.Context, key string, limit Limit) (Decision, error) {
	res, err := r.l.Allow(ctx, "caregrid:rl:"+key, redis_rate.Limit{Rate: limit.Rate, Burst: limit.Burst, Period: limit.Period})
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: res.Allowed > 0, Limit: limit.Rate, Remaining: res.Remaining, ResetAfter: res.ResetAfter}
	if !d.Allowed {
		d.RetryAfter = res.RetryAfter
	}
	return d, nil
}

// Local is a per-process Limiter (token buckets from golang.org/x/time/rate).
type Local struct {
	mu      sync.Mutex
	buckets *expirable.LRU[string, *rate.Limiter]
}

// NewLocal keeps up to size keys; a key idle for an hour starts afresh.
func NewLocal(size int) *Local {
	return &Local{buckets: expirable.NewLRU[string, *rate.Limiter](size, nil, time.Hour)}
}

func (l *Local) Allow(_ context.Context, key string, limit Limit) (Decision, error) {
	every := rate.Every(limit.Period / time.Duration(max(limit.Rate, 1)))
	l.mu.Lock()
	b, ok := l.buckets.Get(key)
	if !ok || b.Burst() != limit.Burst || b.Limit() != every {
		b = rate.NewLimiter(every, limit.Burst)
		l.buckets.Add(key, b)
	}
	l.mu.Unlock()
	now := time.Now()
	r := b.ReserveN(now, 1)
	d := Decision{Limit: limit.Rate}
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		d.RetryAfter = delay
	} else {
		d.Allowed = true
	}
	tokens := b.TokensAt(now)
	d.Remaining = max(int(tokens), 0)
	d.ResetAfter = time.Duration((float64(limit.Burst) - tokens) / float64(every) * float64(time.Second))
	return d, nil
}
