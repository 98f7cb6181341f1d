package edge

import (
	"testing"
	"time"
)

type countingAuth struct {
	n int
	p Principal
}

func (c *countingAuth) Authenticate(string) (Principal, error) { c.n++; return c.p, nil }

func TestCachingAuthenticatorHonoursExpiry(t *testing.T) {
	inner := &countingAuth{p: Principal{Subject: "s", Expiry: time.Now().Add(time.Hour)}}
	c := NewCachingAuthenticator(inner, 10, time.Minute)
	for i := 0; i < 3; i++ {
		if _, err := c.Authenticate("t"); err != nil {
			t.Fatal(err)
		}
	}
	if inner.n != 1 {
		t.Fatalf("inner called %d times for one token, want 1", inner.n)
	}
	inner.p.Expiry = time.Now().Add(-time.Second) // a token that has expired since
	c = NewCachingAuthenticator(inner, 10, time.Minute)
	c.Authenticate("old")
	c.Authenticate("old")
	if inner.n != 3 {
		t.Fatalf("an expired cached token was served from the cache (inner calls %d, want 3)", inner.n)
	}
}
