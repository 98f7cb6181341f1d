package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
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
	failedBy  []int // each failed attempt's status (0: no answer)
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
		status := 0
		if err == nil {
			status = resp.StatusCode
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
		out.failedBy = append(out.failedBy, status)
		if out.failures++; out.failures == 1 {
			firstFailure = time.Now()
		}
		if time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond) // the client's pause between retries, as an integration's
	}
}

// clusterLoad is steady bookings and reads through the edges of every
// member of a cluster, with what came back kept for the checks.
type clusterLoad struct {
	t      *testing.T
	nodes  []*process
	db     *persistence.DB
	client *faultClient

	doctors, patients []string
	first             time.Time

	mu          sync.Mutex
	bookings    []string // ids of 201s
	reads       []string // request ids of 200s
	statuses    map[int]int
	failures    int
	failedBy    map[int]int // failed attempts by status (0: no answer)
	maxRecovery time.Duration
	// phaseRecovery is the longest recovery since the last phase() call.
	phaseRecovery time.Duration

	stop chan struct{}
	wg   sync.WaitGroup
}

// startClusterLoad makes 4 doctors and 24 patients, then runs 8 clients
// (half booking, half reading) until stopAndCheck.
func startClusterLoad(t *testing.T, nodes []*process, db *persistence.DB) *clusterLoad {
	s := &testServer{t: t, db: db, base: nodes[0].base, tokens: map[string]string{}}
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	l := &clusterLoad{t: t, nodes: nodes, db: db, statuses: map[int]int{}, failedBy: map[int]int{}, stop: make(chan struct{}),
		first: localDay(t, 2).Add(-2 * time.Hour)} // 08:00 local
	for range 4 {
		l.doctors = append(l.doctors, workingDoctor(t, s))
	}
	for range 24 {
		r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
		expect(t, "register", r, 201)
		l.patients = append(l.patients, r.json(t)["id"].(string))
	}
	var bases []string
	for _, n := range nodes {
		bases = append(bases, n.base)
	}
	// An integration gives up on an edge that does not answer within a
	// few seconds (one that is paused) and tries another.
	l.client = &faultClient{bases: bases, token: desk, retryFor: recoveryLimit,
		http: &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	for w := range 8 {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if w%2 == 0 {
					l.book()
				} else {
					l.read()
				}
			}
		})
	}
	return l
}

// slot is a 15-minute cell over three days: few enough that bookings
// collide (409s are expected; a 201 for an overlapping slot is not).
func (l *clusterLoad) slot() time.Time {
	return l.first.Add(time.Duration(rand.IntN(3))*24*time.Hour + time.Duration(rand.IntN(40))*15*time.Minute)
}

func (l *clusterLoad) book() {
	body := map[string]any{"doctor_id": l.doctors[rand.IntN(len(l.doctors))], "patient_id": l.patients[rand.IntN(len(l.patients))],
		"start": rfc(l.slot()), "duration_minutes": 15 * (1 + rand.IntN(2)), "reason": "control"}
	o := l.client.do("POST", "/v1/appointments", body, uuid.NewString())
	var a struct{ ID string }
	if o.status == 201 {
		if err := json.Unmarshal(o.body, &a); err != nil || a.ID == "" {
			l.t.Errorf("201 without an id: %s", o.body)
		}
	}
	l.record(o, func() {
		if a.ID != "" {
			l.bookings = append(l.bookings, a.ID)
		}
	})
}

func (l *clusterLoad) read() {
	o := l.client.do("GET", "/v1/patients/"+l.patients[rand.IntN(len(l.patients))], nil, "")
	l.record(o, func() {
		if o.status == 200 {
			l.reads = append(l.reads, o.requestID)
		}
	})
}

func (l *clusterLoad) record(o outcome, keep func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statuses[o.status]++
	l.failures += o.failures
	for _, st := range o.failedBy {
		l.failedBy[st]++
	}
	l.maxRecovery = max(l.maxRecovery, o.recovery)
	l.phaseRecovery = max(l.phaseRecovery, o.recovery)
	keep()
}

// progressed waits until 20 more requests (bookings and reads) have been
// answered: the load is going through again, whatever just happened.
func (l *clusterLoad) progressed(what string) {
	l.t.Helper()
	answered := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.bookings) + len(l.reads)
	}
	from := answered()
	await.Until(l.t, "20 more answered requests "+what, membershipLimit, func() bool { return answered() >= from+20 })
}

// phase returns the longest time from a request's first failure to its
// answer since the last call, and starts a new phase.
func (l *clusterLoad) phase() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.phaseRecovery
	l.phaseRecovery = 0
	return d
}

// failed is the number of failed attempts so far.
func (l *clusterLoad) failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures
}

// recoveryLimit bounds how long one request may take from its first failed
// attempt to its answer, and the client retries that long. Failover takes
// about a second after a kill (the member's closed connection takes it
// out of the topology, and the requests waiting on it are retried on the
// new owners; the tests log each phase's longest) and a few seconds for a
// pause (the peers' grace). The bound is a wide margin for a machine
// loaded by -race and other test binaries: a sanity check, not the figure.
const recoveryLimit = 30 * time.Second

// stopAndCheck ends the load and checks the promises: nothing failed
// beyond the client's retries, every request recovered within recoveryLimit, no
// doctor is double booked, every 201 is stored as booked, and every 200
// read is in the audit trail under its request id.
func (l *clusterLoad) stopAndCheck() {
	t := l.t
	close(l.stop)
	l.wg.Wait()
	t.Logf("answers: %v; failed attempts %d by status %v (0: no answer); longest from a request's first failure to its answer: %v",
		l.statuses, l.failures, l.failedBy, l.maxRecovery.Round(time.Millisecond))
	if l.maxRecovery > recoveryLimit {
		t.Errorf("a request took %v from its first failure to an answer, want within %v", l.maxRecovery, recoveryLimit)
	}
	for status, n := range l.statuses {
		if status == 0 || status >= 500 {
			t.Errorf("%d requests failed beyond the client's %v of retries (status %d)", n, recoveryLimit, status)
		}
	}
	if len(l.bookings) < 20 || len(l.reads) < 50 {
		t.Fatalf("too little load got through to judge: %d bookings, %d reads", len(l.bookings), len(l.reads))
	}
	ctx := context.Background()
	var overlaps int
	if err := l.db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments a JOIN appointments b
		ON a.doctor_id = b.doctor_id AND a.id < b.id AND a.start_at < b.end_at AND b.start_at < a.end_at
		WHERE a.status IN ('booked', 'checked_in') AND b.status IN ('booked', 'checked_in')`).Scan(&overlaps); err != nil {
		t.Fatal(err)
	}
	if overlaps != 0 {
		t.Errorf("%d pairs of overlapping bookings", overlaps)
	}
	var stored int
	if err := l.db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE id = ANY($1::TEXT[]::UUID[]) AND status = 'booked'`,
		l.bookings).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(l.bookings) {
		t.Errorf("%d of %d acknowledged bookings are stored as booked", stored, len(l.bookings))
	}
	var audited int
	if err := l.db.Pool.QueryRow(ctx, `SELECT count(DISTINCT request_id) FROM audit_events
		WHERE action = 'read' AND outcome = 'success' AND request_id = ANY($1::TEXT[])`, l.reads).Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if audited != len(l.reads) {
		t.Errorf("%d of %d successful reads are in the audit trail", audited, len(l.reads))
	}
}

// Each member in turn is killed with SIGKILL, left down 4 s and restarted,
// under load through all three edges; then one is paused 8 s (SIGSTOP):
// every member records its audit events in its own chain, so the others
// serve on, and the paused one, resumed, finds it was dropped and rejoins
// under a new id by itself.
func TestKillingMembersUnderLoadLosesAndDoublesNothing(t *testing.T) {
	pc := startPeerCluster(t, 3)
	nodes, db := pc.nodes, pc.db
	load := startClusterLoad(t, nodes, db)
	load.progressed("before the first kill")
	for _, victim := range []int{1, 2, 0} {
		before := load.failed()
		load.phase()
		nodes[victim].kill()
		dropped := pc.waitMembers(t, "the others drop node "+strconv.Itoa(victim), 2, victim)
		load.progressed("while node " + strconv.Itoa(victim) + " is down")
		downPhase := load.phase()
		nodes[victim].start()
		pc.waitMembers(t, "every node sees the restarted node "+strconv.Itoa(victim), 3, -1)
		load.progressed("after node " + strconv.Itoa(victim) + " came back")
		t.Logf("kill -9 of node %d: dropped after %v; %d failed attempts (each retried on another node) until the load went on after its restart; longest recovery while it was down %v, after its restart %v",
			victim, dropped.Round(time.Millisecond), load.failed()-before, downPhase.Round(time.Millisecond), load.phase().Round(time.Millisecond))
	}

	// A pause: node 1 stops for 8 s, past its peers' grace.
	before := load.failed()
	load.phase()
	_ = nodes[1].cmd.Process.Signal(syscall.SIGSTOP)
	dropped := pc.waitMembers(t, "the others drop the paused node 1", 2, 1)
	load.progressed("while node 1 is paused")
	time.Sleep(8*time.Second - dropped)
	pausePhase := load.phase()
	_ = nodes[1].cmd.Process.Signal(syscall.SIGCONT)
	await.Until(t, "node 1 rejoins by itself", membershipLimit, func() bool { return nodeMetric(nodes[1].base, "caregrid_cluster_rejoins_total") == 1 })
	pc.waitMembers(t, "every node sees node 1 again", 3, -1)
	load.progressed("after node 1 rejoined")
	select {
	case <-nodes[1].done:
		t.Fatalf("the paused node exited (%v), want it to rejoin in its process", nodes[1].waitErr)
	default:
	}
	t.Logf("SIGSTOP of node 1 for 8 s: dropped after %v; %d failed attempts; longest recovery while it was paused %v, after it rejoined %v",
		dropped.Round(time.Millisecond), load.failed()-before, pausePhase.Round(time.Millisecond), load.phase().Round(time.Millisecond))
	load.stopAndCheck()
}

// A rolling restart: each member in turn gets SIGTERM (it drains HTTP,
// tells its peers it is leaving, stops), and is started again.
func TestRollingRestartWithSIGTERMUnderLoad(t *testing.T) {
	pc := startPeerCluster(t, 3)
	nodes, db := pc.nodes, pc.db
	load := startClusterLoad(t, nodes, db)
	load.progressed("before the first restart")
	for i := range nodes {
		before := load.failed()
		took := nodes[i].terminate()
		nodes[i].start()
		pc.waitMembers(t, "every node sees the restarted node "+strconv.Itoa(i), 3, -1)
		load.progressed("after node " + strconv.Itoa(i) + " came back")
		t.Logf("SIGTERM of node %d: stopped in %v; %d failed attempts (each retried on another node) until the load went on after it was back",
			i, took.Round(time.Millisecond), load.failed()-before)
	}
	load.stopAndCheck()
}
