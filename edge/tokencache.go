package edge

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// CachingAuthenticator remembers tokens that verified, for at most TTL, so
// the edge does not re-parse and re-verify the same token on every request
// (verification was the largest single cost of a cached read). Tokens that
// fail are not cached: a retry with a fixed clock or key is checked afresh.
// Revocation, when the identity work adds it, must be checked per request
// by the wrapped authenticator or bound this TTL.
type CachingAuthenticator struct {
	next  Authenticator
	cache *expirable.LRU[string, Principal]
}

// NewCachingAuthenticator wraps next with a cache of size entries.
func NewCachingAuthenticator(next Authenticator, size int, ttl time.Duration) *CachingAuthenticator {
	return &CachingAuthenticator{next: next, cache: expirable.NewLRU[string, Principal](size, nil, ttl)}
}

func (a *CachingAuthenticator) Authenticate(token string) (Principal, error) {
	if p, ok := a.cache.Get(token); ok {
		if time.Now().Before(p.Expiry) {
			return p, nil
		}
		a.cache.Remove(token)
	}
	p, err := a.next.Authenticate(token)
	if err != nil {
		return Principal{}, err
	}
	a.cache.Add(token, p)
	return p, nil
}
