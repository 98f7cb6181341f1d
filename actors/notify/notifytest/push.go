package notifytest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// PushMessage is one message a subscription received, decrypted.
type PushMessage struct {
	Subscription string
	Topic        string
	Payload      []byte
}

// Subscription is a browser's side of a push subscription: its key pair
// and auth secret, as PushManager.subscribe() makes them.
type Subscription struct {
	ID       string
	Endpoint string
	P256DH   string // base64url
	Auth     string // base64url
	key      *ecdh.PrivateKey
	secret   []byte
}

// PushService is a Web Push service (RFC 8030) on loopback. For each
// message it checks the VAPID JWT against the public key the application
// server announced (RFC 8292), decrypts the payload with the
// subscription's private key (RFC 8291, aes128gcm), and, as push services
// do with the Topic header, keeps one copy per topic.
type PushService struct {
	URL string
	// VAPIDPublic is the application server key subscriptions were made
	// with; a message signed with another is refused (403).
	VAPIDPublic string

	mu       sync.Mutex
	subs     map[string]*Subscription
	msgs     []PushMessage
	topics   map[string]bool
	replaced int
	down     bool
	refused  []string
	got      chan struct{}
	srv      *httptest.Server
}

// StartPush starts a push service that accepts messages signed with vapidPublic.
func StartPush(t testing.TB, vapidPublic string) *PushService {
	t.Helper()
	p := &PushService{VAPIDPublic: vapidPublic, subs: map[string]*Subscription{}, topics: map[string]bool{}, got: make(chan struct{}, 1<<16)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// Subscribe makes a new subscription, as a browser would.
func (p *PushService) Subscribe() *Subscription {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	p.mu.Lock()
	defer p.mu.Unlock()
	id := fmt.Sprintf("s%d", len(p.subs)+1)
	s := &Subscription{ID: id, Endpoint: p.URL + "/push/" + id, key: key, secret: secret,
		P256DH: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), Auth: base64.RawURLEncoding.EncodeToString(secret)}
	p.subs[id] = s
	return s
}

// Unsubscribe forgets a subscription: its messages get 410 Gone.
func (p *PushService) Unsubscribe(s *Subscription) {
	p.mu.Lock()
	delete(p.subs, s.ID)
	p.mu.Unlock()
}

// Down makes the service answer 503, or serve again.
func (p *PushService) Down(on bool) {
	p.mu.Lock()
	p.down = on
	p.mu.Unlock()
}

// Messages are the messages delivered so far (one per topic).
func (p *PushService) Messages() []PushMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PushMessage(nil), p.msgs...)
}

// Refused are the reasons of the requests the service refused.
func (p *PushService) Refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

// Received is signalled once per delivered message.
func (p *PushService) Received() <-chan struct{} { return p.got }

func (p *PushService) serve(w http.ResponseWriter, r *http.Request) {
	refuse := func(code int, why string) {
		p.mu.Lock()
		p.refused = append(p.refused, why)
		p.mu.Unlock()
		http.Error(w, why, code)
	}
	p.mu.Lock()
	down := p.down
	sub := p.subs[strings.TrimPrefix(r.URL.Path, "/push/")]
	p.mu.Unlock()
	switch {
	case down:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case r.Method != http.MethodPost:
		refuse(http.StatusMethodNotAllowed, "method "+r.Method)
		return
	case sub == nil:
		http.Error(w, "gone", http.StatusGone)
		return
	case r.Header.Get("TTL") == "":
		refuse(http.StatusBadRequest, "no TTL")
		return
	case r.Header.Get("Content-Encoding") != "aes128gcm":
		refuse(http.StatusUnsupportedMediaType, "content encoding "+r.Header.Get("Content-Encoding"))
		return
	}
	if err := p.checkVAPID(r.Header.Get("Authorization")); err != nil {
		refuse(http.StatusForbidden, "vapid: "+err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	plain, err := decrypt(sub, body)
	if err != nil {
		refuse(http.StatusBadRequest, "payload: "+err.Error())
		return
	}
	topic := r.Header.Get("Topic")
	p.mu.Lock()
	key := sub.ID + "/" + topic
	if topic != "" && p.topics[key] {
		p.replaced++ // the undelivered copy is replaced: still one message
	} else {
		p.topics[key] = topic != ""
		p.msgs = append(p.msgs, PushMessage{Subscription: sub.ID, Topic: topic, Payload: plain})
		select {
		case p.got <- struct{}{}:
		default:
		}
	}
	p.mu.Unlock()
	w.Header().Set("Location", fmt.Sprintf("%s/message/%d", p.URL, time.Now().UnixNano()))
	w.WriteHeader(http.StatusCreated)
}

// checkVAPID verifies "vapid t=<JWT>, k=<key>": the key is the one
// subscriptions were made with, the ES256 signature holds, aud is this
// service's origin, exp is in the future and at most a day away.
func (p *PushService) checkVAPID(h string) error {
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return errors.New("no vapid authorization")
	}
	var token, k string
	for _, part := range strings.Split(rest, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch name {
		case "t":
			token = value
		case "k":
			k = value
		}
	}
	if k != p.VAPIDPublic {
		return errors.New("not the application server's key")
	}
	raw, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return err
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), raw) //nolint:staticcheck // the point as VAPID sends it
	if x == nil {
		return errors.New("key is not a P-256 point")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return errors.New("not an ES256 signature")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return errors.New("signature does not verify")
	}
	var header struct{ Alg string }
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if json.Unmarshal(hb, &header) != nil || header.Alg != "ES256" {
		return errors.New("alg is not ES256")
	}
	var claims struct {
		Aud string
		Exp int64
		Sub string
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(cb, &claims); err != nil {
		return err
	}
	now := time.Now().Unix()
	switch {
	case claims.Aud != p.URL:
		return fmt.Errorf("aud %q is not %q", claims.Aud, p.URL)
	case claims.Exp <= now || claims.Exp > now+24*3600:
		return errors.New("exp out of range")
	case !strings.HasPrefix(claims.Sub, "mailto:") && !strings.HasPrefix(claims.Sub, "https:"):
		return errors.New("sub is not a contact")
	}
	return nil
}

// decrypt opens an aes128gcm body (RFC 8188) with the keys RFC 8291
// derives from the subscription's private key and auth secret.
func decrypt(sub *Subscription, body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short body")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 || rs < 18 {
		return nil, errors.New("bad header")
	}
	asPublic, ciphertext := body[21:21+idlen], body[21+idlen:]
	peer, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, err
	}
	shared, err := sub.key.ECDH(peer)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), sub.key.PublicKey().Bytes()...), asPublic...)
	ikm, err := hkdf.Key(sha256.New, shared, sub.secret, string(info), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) > int(rs) {
		return nil, errors.New("more than one record")
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, err
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 0x02 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}
