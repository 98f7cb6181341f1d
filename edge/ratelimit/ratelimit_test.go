package ratelimit

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
)

func limiters(t *testing.T) map[string]Limiter {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	r, closeRedis, err := NewRedis(context.Background(), url)
	if err != nil {
		t.Fatalf("Redis at %s: %v (start it, or set REDIS_URL)", url, err)
	}
	t.Cleanup(func() { _ = closeRedis() })
	return map[string]Limiter{"redis": r, "local": NewLocal(100)}
}

func TestLimitersRefuseBeyondTheBurstPerKey(t *testing.T) {
	ctx := context.Background()
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			key, other := "test:"+uuid.NewString(), "test:"+uuid.NewString()
			limit := PerMinute(3)
			for i := range 3 {
				d, err := l.Allow(ctx, key, limit)
				if err != nil || !d.Allowed || d.Remaining != 2-i {
					t.Fatalf("event %d: %+v, %v; want allowed with %d remaining", i+1, d, err, 2-i)
				}
			}
			d, err := l.Allow(ctx, key, limit)
			if err != nil || d.Allowed {
				t.Fatalf("event 4: %+v, %v; want refused", d, err)
			}
			if d.RetryAfter < 15*time.Second || d.RetryAfter > 20*time.Second {
				t.Errorf("RetryAfter = %v, want about 20s (one event per 20 s)", d.RetryAfter)
			}
			if d.ResetAfter <= 0 || d.ResetAfter > time.Minute {
				t.Errorf("ResetAfter = %v, want within a minute", d.ResetAfter)
			}
			if d, _ := l.Allow(ctx, other, limit); !d.Allowed {
				t.Errorf("another key was refused: %+v", d)
			}
		})
	}
}
