package notify

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/SherClockHolmes/webpush-go"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/persistence/seal"
)

// VAPID is the application server's key pair (RFC 8292): push services
// accept messages signed with it for the subscriptions made with its
// public key. Derived from the master key, so every member signs alike
// and a browser's subscription survives restarts.
type VAPID struct {
	Public, Private string // base64url, unpadded: the point, the scalar
}

// DeriveVAPID derives the cluster's VAPID key pair from the master key.
func DeriveVAPID(master *seal.Key) (VAPID, error) {
	seed := master.Derive("vapid")
	for range 16 {
		k, err := ecdh.P256().NewPrivateKey(seed[:])
		if err == nil {
			return VAPID{Public: base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
				Private: base64.RawURLEncoding.EncodeToString(seed[:])}, nil
		}
		seed = sha256.Sum256(seed[:]) // out of the curve's range: derive again
	}
	return VAPID{}, errors.New("vapid: no key in range")
}

// Push sends Web Push messages (RFC 8030) with VAPID (RFC 8292) and the
// payload encrypted for the browser (RFC 8291), through webpush-go.
// The Topic header carries the notification id, so a message sent again
// replaces the undelivered copy at the push service instead of arriving
// twice.
type Push struct {
	VAPID VAPID
	// Subscriber is the contact push services may use (a mailto: or https: URL).
	Subscriber string
	// Client sends the requests (nil: http.DefaultClient).
	Client *http.Client
	// TTL is how long a push service keeps an undelivered message, in seconds (default one day).
	TTL int
}

// pushPayload is what the service worker receives.
type pushPayload struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	URL   string `json:"url,omitempty"`
	Tag   string `json:"tag"`
}

// goneError: the push service says the subscription no longer exists.
type goneError struct{ endpoint string }

func (g goneError) Error() string { return "push: the subscription is gone" }

// Send delivers m to its subscription.
func (p Push) Send(ctx context.Context, m Message) (string, error) {
	if m.Push == nil {
		return "", Permanent(errors.New("push: no subscription"))
	}
	payload, err := json.Marshal(pushPayload{Title: m.Subject, Body: m.Short, URL: m.URL, Tag: m.ID})
	if err != nil {
		return "", Permanent(err)
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = 24 * 3600
	}
	opts := &webpush.Options{Subscriber: p.Subscriber, VAPIDPublicKey: p.VAPID.Public, VAPIDPrivateKey: p.VAPID.Private,
		TTL: ttl, Topic: strings.ReplaceAll(m.ID, "-", ""), Urgency: webpush.UrgencyNormal}
	if p.Client != nil {
		opts.HTTPClient = p.Client
	}
	resp, err := webpush.SendNotificationWithContext(ctx, payload,
		&webpush.Subscription{Endpoint: m.Push.Endpoint, Keys: webpush.Keys{P256dh: m.Push.P256DH, Auth: m.Push.Auth}}, opts)
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return "", Permanent(goneError{endpoint: m.Push.Endpoint})
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "", fmt.Errorf("push: service answered %s", resp.Status)
	case resp.StatusCode >= 400:
		return "", Permanent(fmt.Errorf("push: service answered %s", resp.Status))
	}
	return resp.Header.Get("Location"), nil
}

// ValidSubscription adds to errs what is wrong with a browser's
// subscription: it needs an https endpoint (loopback may be http, for
// tests and a push service on the node's host) and keys of the sizes RFC
// 8291 fixes.
func ValidSubscription(endpoint, p256dh, auth string, errs *validate.Errors) {
	u, err := url.Parse(endpoint)
	switch {
	case err != nil || u.Host == "" || len(endpoint) > 2048:
		errs.Add("endpoint", "must be the push service's URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && plainAllowed(u.Host, false)):
		errs.Add("endpoint", "must be an https URL")
	}
	if k, err := decodeKey(p256dh); err != nil || len(k) != 65 || k[0] != 4 {
		errs.Add("keys.p256dh", "must be an uncompressed P-256 public key, base64url")
	} else if _, err := ecdh.P256().NewPublicKey(k); err != nil {
		errs.Add("keys.p256dh", "must be a point on P-256")
	}
	if k, err := decodeKey(auth); err != nil || len(k) != 16 {
		errs.Add("keys.auth", "must be a 16-byte secret, base64url")
	}
}

func decodeKey(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
