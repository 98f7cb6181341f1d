package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/valyala/fasthttp"
	"golang.org/x/oauth2/clientcredentials"
)

// benchResult is the one JSON line a scenario prints.
type benchResult struct {
	Scenario    string  `json:"scenario"`
	RequestsPS  float64 `json:"requests_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Errors      int64   `json:"errors"`
	Requests    int64   `json:"requests"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
}

func benchCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(benchUsage)
	}
	switch args[0] {
	case "read-patient":
	case "booking-hot", "booking-spread", "booking-sql-baseline":
		return benchBooking(ctx, args[0], args[1:])
	case "seed":
		return benchSeed(ctx, args[1:])
	case "search-patients":
		return benchSearchPatients(ctx, args[1:])
	default:
		return errors.New(benchUsage)
	}
	fs := flag.NewFlagSet("bench read-patient", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the edge to load")
	urls := fs.String("urls", "", "several edges to spread the load over, comma-separated (instead of --url)")
	conc := fs.Int("concurrency", 32, "concurrent clients")
	dur := fs.Duration("duration", 10*time.Second, "how long to measure")
	warmup := fs.Duration("warmup", 2*time.Second, "load before measuring (activates grains, fills pools)")
	patients := fs.Int("patients", 200, "patients to register and read at random")
	creds := benchCredentialFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *conc < 1 || *dur <= 0 || *patients < 1 {
		return errors.New("bench: --concurrency, --duration and --patients must be positive")
	}
	target, err := newBenchTarget(ctx, *base, *urls, creds)
	if err != nil {
		return err
	}
	r, err := benchReadPatient(ctx, target, *conc, *patients, *warmup, *dur)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

type benchTarget struct {
	base  string   // the first edge: request URIs name it, whichever edge serves them
	hosts []string // every edge's host:port
	token string   // an admin service client's access token
}

// newBenchTarget signs in at the first edge of urls (or at base when urls
// is empty); a token from one edge is good on all of a cluster's.
func newBenchTarget(ctx context.Context, base, urls string, creds benchCredentials) (benchTarget, error) {
	list := []string{base}
	if urls != "" {
		list = strings.Split(urls, ",")
	}
	t := benchTarget{base: strings.TrimSuffix(list[0], "/")}
	for _, raw := range list {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return t, fmt.Errorf("bench: %q is not an http(s) URL", raw)
		}
		t.hosts = append(t.hosts, u.Host)
	}
	tok, err := creds.token(ctx, t.base)
	t.token = tok
	return t, err
}

// benchCredentials are a service client's, for the client-credentials
// grant: the load generator signs in like any integration would.
type benchCredentials struct{ id, secret *string }

func benchCredentialFlags(fs *flag.FlagSet) benchCredentials {
	return benchCredentials{
		id:     fs.String("client-id", os.Getenv("CAREGRID_BENCH_CLIENT_ID"), "service client (admin role) to sign in as (env CAREGRID_BENCH_CLIENT_ID)"),
		secret: fs.String("client-secret", os.Getenv("CAREGRID_BENCH_CLIENT_SECRET"), "its secret (env CAREGRID_BENCH_CLIENT_SECRET)"),
	}
}

func (c benchCredentials) token(ctx context.Context, base string) (string, error) {
	if *c.id == "" || *c.secret == "" {
		return "", errors.New("bench: --client-id and --client-secret are required (caregrid admin client create --kind service --role admin --name bench)")
	}
	cc := clientcredentials.Config{ClientID: *c.id, ClientSecret: *c.secret, TokenURL: strings.TrimSuffix(base, "/") + identity.PathPrefix + "/oauth/token"}
	tok, err := cc.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("bench: sign in: %w", err)
	}
	return tok.AccessToken, nil
}

// client sends each request to one of the edges, balancing by their
// pending requests (fasthttp.LBClient); with one edge, to it.
func (t benchTarget) client(conc int) interface {
	Do(*fasthttp.Request, *fasthttp.Response) error
} {
	if len(t.hosts) == 1 {
		return t.hostClient(t.hosts[0], conc)
	}
	lb := &fasthttp.LBClient{Timeout: 10 * time.Second}
	for _, h := range t.hosts {
		lb.Clients = append(lb.Clients, t.hostClient(h, conc))
	}
	return lb
}

func (t benchTarget) hostClient(host string, conc int) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: host, MaxConns: conc + 4, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}

// randomIDNP returns a valid IDNP.
func randomIDNP(rng *rand.Rand) string {
	b := make([]byte, 12, 13)
	for i := range b {
		b[i] = byte('0' + rng.IntN(10))
	}
	return string(append(b, patient.CheckDigit(string(b))))
}

// registerPatients registers n patients through the API and returns their ids.
func registerPatients(ctx context.Context, t benchTarget, n int) ([]string, error) {
	tok := t.token
	c := t.client(8)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var ids []string
	for len(ids) < n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		body, _ := json.Marshal(map[string]any{
			"idnp": randomIDNP(rng), "given_name": "Bench", "family_name": "Patient" + strconv.Itoa(len(ids)),
			"birth_date": "1980-01-01", "sex": "unknown",
		})
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI(t.base + "/v1/patients")
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.SetBody(body)
		err := c.Do(req, resp)
		status := resp.StatusCode()
		var p struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(resp.Body(), &p)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		switch {
		case err != nil:
			return nil, fmt.Errorf("bench: register: %w", err)
		case status == 409:
			continue // an IDNP another run registered
		case status != 201:
			return nil, fmt.Errorf("bench: register answered %d", status)
		}
		ids = append(ids, p.ID)
	}
	return ids, nil
}

func benchReadPatient(ctx context.Context, t benchTarget, conc, patients int, warmup, dur time.Duration) (benchResult, error) {
	ids, err := registerPatients(ctx, t, patients)
	if err != nil {
		return benchResult{}, err
	}
	// The admin reads demographics (a doctor would need an appointment with
	// each patient first: access.ReadPatient); the path is the same audited read.
	c := t.client(conc)
	auth := "Bearer " + t.token
	one := func() (time.Duration, bool) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(t.base + "/v1/patients/" + ids[rand.IntN(len(ids))])
		req.Header.Set("Authorization", auth)
		start := time.Now()
		err := c.Do(req, resp)
		return time.Since(start), err == nil && resp.StatusCode() == 200
	}
	lat, errs, elapsed := loadLoop(ctx, conc, warmup, dur, one)
	if ctx.Err() != nil {
		return benchResult{}, ctx.Err()
	}
	return summarize("read-patient", lat, errs, conc, elapsed), nil
}

func summarize(scenario string, lat []time.Duration, errs int64, conc int, elapsed time.Duration) benchResult {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	return benchResult{
		Scenario: scenario, RequestsPS: float64(len(lat)) / elapsed.Seconds(),
		P50ms: pct(0.50), P99ms: pct(0.99), Errors: errs, Requests: int64(len(lat)),
		Concurrency: conc, DurationS: elapsed.Seconds(),
	}
}
