package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
)

// faultClient is a load client that retries, as an integration would: on a
// network error or a retryable answer (5xx, 429) it tries the next node,
// with the same Idempotency-Key, until retryFor has passed.
type faultClient struct {
	bases    []string
	token    string
	retryFor time.Duration
	http     *http.Client
}

// outcome is one logical request's end: its status (0: it never got an
// answer), the body and request id of that answer, the attempts that failed
// on the way, and how long it took from its first failure to its answer.
type outcome struct {
	status    int
	body      []byte
	requestID string
	failures  int
	recovery  time.Duration
}

func (c *faultClient) do(method, path string, body any, key string) outcome {
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	var out outcome
	var firstFailure time.Time
	deadline := time.Now().Add(c.retryFor)
	for i := rand.IntN(len(c.bases)); ; i++ {
		req, _ := http.NewRequest(method, c.bases[i%len(c.bases)]+path, bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+c.token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := c.http.Do(req)
		if err == nil {
			out.body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			out.status, out.requestID = resp.StatusCode, resp.Header.Get("X-Request-Id")
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				if out.failures > 0 {
					out.recovery = time.Since(firstFailure)
				}
				return out
			}
		}
		if out.failures++; out.failures == 1 {
			firstFailure = time.Now()
		}
		if time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Steady bookings and reads through the edges of all three members while
// one member after another is killed with SIGKILL and restarted. Afterwards
// no doctor is double booked, every booking that got a 201 is stored, and
// every read that got a 200 is in the audit trail.
func TestKillingMembersUnderLoadLosesAndDoublesNothing(t *testing.T) {
	nodes, db, _ := startPeerCluster(t, 3)
	tokens := map[string]string{}
	s := &testServer{t: t, db: db, base: nodes[0].base, tokens: tokens}
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	var doctors, patients []string
	for range 4 {
		doctors = append(doctors, workingDoctor(t, s))
	}
	for range 24 {
		r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
		expect(t, "register", r, 201)
		patients = append(patients, r.json(t)["id"].(string))
	}
	var bases []string
	for _, n := range nodes {
		bases = append(bases, n.base)
	}
	client := &faultClient{bases: bases, token: desk, retryFor: 20 * time.Second,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}

	// Slots: 15-minute cells over three days, few enough that bookings
	// collide (409s are expected; a 201 for an overlapping slot is not).
	first := localDay(t, 2).Add(-2 * time.Hour) // 08:00 local
	slot := func() time.Time {
		return first.Add(time.Duration(rand.IntN(3))*24*time.Hour + time.Duration(rand.IntN(40))*15*time.Minute)
	}

	var (
		mu          sync.Mutex
		bookings    []string
		reads       []string
		statuses    = map[int]int{}
		failures    int
		maxRecovery time.Duration
	)
	record := func(o outcome) {
		mu.Lock()
		defer mu.Unlock()
		statuses[o.status]++
		failures += o.failures
		maxRecovery = max(maxRecovery, o.recovery)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if w%2 == 0 { // bookers
					body := map[string]any{"doctor_id": doctors[rand.IntN(len(doctors))], "patient_id": patients[rand.IntN(len(patients))],
						"start": rfc(slot()), "duration_minutes": 15 * (1 + rand.IntN(2)), "reason": "control"}
					o := client.do("POST", "/v1/appointments", body, uuid.NewString())
					record(o)
					if o.status == 201 {
						var a struct{ ID string }
						if err := json.Unmarshal(o.body, &a); err != nil || a.ID == "" {
							t.Errorf("201 without an id: %s", o.body)
							continue
						}
						mu.Lock()
						bookings = append(bookings, a.ID)
						mu.Unlock()
					}
				} else { // readers
					o := client.do("GET", "/v1/patients/"+patients[rand.IntN(len(patients))], nil, "")
					record(o)
					if o.status == 200 {
						mu.Lock()
						reads = append(reads, o.requestID)
						mu.Unlock()
					}
				}
			}
		})
	}

	// The faults: each member in turn is killed, left down for a while and
	// restarted, with load flowing all along.
	type failover struct{ node, failed int }
	var failovers []failover
	countFailures := func() int { mu.Lock(); defer mu.Unlock(); return failures }
	time.Sleep(3 * time.Second)
	for _, victim := range []int{1, 2, 0} {
		before := countFailures()
		nodes[victim].kill()
		time.Sleep(4 * time.Second)
		nodes[victim].start()
		time.Sleep(3 * time.Second)
		failovers = append(failovers, failover{victim, countFailures() - before})
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, f := range failovers {
		t.Logf("kill -9 of node %d: %d failed attempts (each retried on another node) until 3 s after its restart", f.node, f.failed)
	}
	t.Logf("answers: %v; longest from a request's first failure to its answer: %v", statuses, maxRecovery.Round(time.Millisecond))
	if maxRecovery > 10*time.Second {
		t.Errorf("a request took %v from its first failure to an answer, want within 10 s", maxRecovery)
	}
	if statuses[0] > 0 || statuses[500] > 0 || statuses[502] > 0 || statuses[503] > 0 || statuses[504] > 0 {
		t.Errorf("requests that failed beyond the client's 20 s of retries: %v", statuses)
	}
	if len(bookings) < 20 || len(reads) < 50 {
		t.Fatalf("too little load got through to judge: %d bookings, %d reads", len(bookings), len(reads))
	}

	ctx := context.Background()
	// No double booking: no two live appointments of a doctor overlap, and
	// no slot cell is claimed twice.
	var overlaps int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments a JOIN appointments b
		ON a.doctor_id = b.doctor_id AND a.id < b.id AND a.start_at < b.end_at AND b.start_at < a.end_at
		WHERE a.status IN ('booked', 'checked_in') AND b.status IN ('booked', 'checked_in')`).Scan(&overlaps); err != nil {
		t.Fatal(err)
	}
	if overlaps != 0 {
		t.Errorf("%d pairs of overlapping bookings", overlaps)
	}
	// Every 201 is stored, booked.
	var stored int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE id = ANY($1::TEXT[]::UUID[]) AND status = 'booked'`, bookings).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(bookings) {
		t.Errorf("%d of %d acknowledged bookings are stored as booked", stored, len(bookings))
	}
	// Every 200 read is audited under its request id.
	var audited int
	if err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT request_id) FROM audit_events
		WHERE action = 'read' AND outcome = 'success' AND request_id = ANY($1::TEXT[])`, reads).Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if audited != len(reads) {
		t.Errorf("%d of %d successful reads are in the audit trail", audited, len(reads))
	}
}
