// These tests run several proto.actor members (real remoting on loopback)
// in one process, under the race detector like every other test: the
// races that kept them out of it (a rand source and gRPC's logger shared
// by every member of a process, and others) are fixed in
// third_party/protoactor-go.

package patient_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/proof/prooftest"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/audit/audittest"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/internal/memstat"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
)

var desk = prooftest.Sign(&messages.Caller{Subject: "desk-1", Role: messages.Role_ROLE_RECEPTIONIST, PurposeOfUse: "TREAT"})

// checker proves the callers of this process's grains; prooftest.Sign
// makes the tokens it accepts.
var checker = prooftest.Checker()

func TestMain(m *testing.M) { prooftest.Main(m) }

// memberConfig is one real member (real remoting on loopback) hosting the
// patient and audit kinds. Members sharing an agent form one cluster.
func memberConfig(t testing.TB, db *persistence.DB, name string, agent *cluster.Agent) cluster.Config {
	return memberConfigIdle(t, db, name, agent, time.Minute)
}

// memberConfigIdle is memberConfig whose patients passivate after idle.
func memberConfigIdle(t testing.TB, db *persistence.DB, name string, agent *cluster.Agent, idle time.Duration) cluster.Config {
	rec := audit.Recorder{Chain: audittest.OpenChain(t, db, name), Timeout: 5 * time.Second}
	return cluster.Config{
		Name: name, Agent: agent, TLS: prooftest.TLS(t),
		Kinds: []*actorcluster.Kind{
			patient.Kind(patient.Deps{DB: db, Master: pgtest.MasterKey(t), Proof: checker, Audit: rec}, idle),
		},
	}
}

// startGroup starts members together (see cluster.StartGroup) and stops
// them gracefully, so no gRPC connection outlives the test.
func startGroup(t testing.TB, cfgs ...cluster.Config) []*cluster.Node {
	t.Helper()
	nodes, err := cluster.StartGroup(context.Background(), cfgs...)
	if err != nil {
		t.Fatalf("start members: %v", err)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.Stop(true) }()
		}
		wg.Wait()
	})
	return nodes
}

func waitMembers(t *testing.T, nodes []*cluster.Node, want int) {
	t.Helper()
	for i, n := range nodes {
		await.Until(t, fmt.Sprintf("member %d to see %d members", i, want), 30*time.Second, func() bool { return n.Members() == want })
	}
}

func register(c *actorcluster.Cluster, id, idnp string) (*messages.PatientReply, error) {
	req := &messages.RegisterPatientRequest{Caller: desk, Patient: &messages.PatientRecord{
		Idnp: idnp, GivenName: "Ion", FamilyName: "Rusu", BirthDate: "1970-01-01", Sex: messages.Sex_SEX_MALE,
	}}
	return cluster.Call(context.Background(), c, "Patient", id, func() (*messages.PatientReply, error) {
		return messages.GetPatientGrainClient(c, id).Register(req, cluster.CallOptions(0)...)
	})
}

func get(c *actorcluster.Cluster, id string) (*messages.PatientReply, error) {
	req := &messages.GetPatientRequest{Caller: desk}
	return cluster.Call(context.Background(), c, "Patient", id, func() (*messages.PatientReply, error) {
		return messages.GetPatientGrainClient(c, id).Get(req, cluster.CallOptions(0)...)
	})
}

func setPhone(c *actorcluster.Cluster, id, phone string, version int64) (*messages.PatientReply, error) {
	req := &messages.UpdatePatientRequest{Caller: desk, ExpectedVersion: version,
		Patient: &messages.PatientRecord{Phone: phone}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"phone"}}}
	return cluster.Call(context.Background(), c, "Patient", id, func() (*messages.PatientReply, error) {
		return messages.GetPatientGrainClient(c, id).Update(req, cluster.CallOptions(0)...)
	})
}

// idnp makes the n-th valid IDNP.
func idnp(n int) string {
	s := fmt.Sprintf("%012d", n)
	return s + string(patient.CheckDigit(s))
}

func TestThreeMembersServeEachOthersIdentities(t *testing.T) {
	db := pgtest.New(t)
	agent := cluster.NewAgent()
	name := fmt.Sprintf("three-%d", time.Now().UnixNano())
	nodes := startGroup(t, memberConfig(t, db, name, agent), memberConfig(t, db, name, agent), memberConfig(t, db, name, agent))
	waitMembers(t, nodes, 3)

	const n = 30
	ids := make([]string, n)
	hosts := map[string]int{}
	for i := range ids {
		ids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		if _, err := register(nodes[0].Cluster, ids[i], idnp(i)); err != nil {
			t.Fatalf("register %d through member 0: %v", i, err)
		}
		hosts[nodes[0].Cluster.Get(ids[i], "Patient").Address]++
	}
	if len(hosts) < 2 {
		t.Fatalf("all %d patients live on %v: placement did not spread, the test proves nothing", n, hosts)
	}
	remote := 0
	for i, id := range ids {
		for m, node := range nodes {
			got, err := get(node.Cluster, id)
			if err != nil {
				t.Fatalf("read patient %d through member %d: %v", i, m, err)
			}
			if got.Patient.Idnp != idnp(i) {
				t.Fatalf("read patient %d through member %d: idnp %s, want %s", i, m, got.Patient.Idnp, idnp(i))
			}
			if node.Cluster.Get(id, "Patient").Address != node.Address() {
				remote++
			}
		}
	}
	if remote == 0 {
		t.Fatal("no read crossed members")
	}
	// Every access was audited: 1 create and 3 reads per patient.
	for _, id := range ids[:3] {
		rows, err := db.PatientAuditEvents(context.Background(), id, persistence.AuditWindow{}, 100)
		if err != nil || len(rows) != 4 {
			t.Fatalf("audit events of %s = %d (%v), want 4", id, len(rows), err)
		}
	}
}

// TestFencedActivationStopsAndCallerRetries runs two activations of one
// patient at once, as proto.actor does while membership changes: two
// clusters that cannot see each other share the database. The stale one's
// write is refused, it stops, the caller's retry reaches a live activation,
// and no write is lost.
func TestFencedActivationStopsAndCallerRetries(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	nodes := startGroup(t, memberConfig(t, db, fmt.Sprintf("split-a-%d", time.Now().UnixNano()), nil),
		memberConfig(t, db, fmt.Sprintf("split-b-%d", time.Now().UnixNano()), nil))
	a, b := nodes[0], nodes[1]
	const id = "11111111-1111-4111-8111-111111111111"

	if _, err := register(a.Cluster, id, idnp(1)); err != nil {
		t.Fatalf("register via a: %v", err)
	}
	if _, err := get(b.Cluster, id); err != nil { // b's activation claims the patient
		t.Fatalf("read via b: %v", err)
	}
	before := a.Cluster.Get(id, "Patient")

	// a's activation is stale: its write is fenced, it stops, Call retries.
	got, err := setPhone(a.Cluster, id, "+37360000001", 1)
	if err != nil {
		t.Fatalf("update via a = %v, want success after the retry", err)
	}
	if got.Patient.Version != 2 || got.Patient.Phone != "+37360000001" {
		t.Fatalf("update via a = %v, want version 2", got.Patient)
	}
	if after := a.Cluster.Get(id, "Patient"); after.Id == before.Id {
		t.Fatalf("the fenced activation %s still serves", before.Id)
	}

	// b's activation still holds version 1 and is now stale too.
	got, err = setPhone(b.Cluster, id, "+37360000002", 2)
	if err != nil {
		t.Fatalf("update via b = %v, want success after the retry", err)
	}
	if got.Patient.Version != 3 {
		t.Fatalf("update via b: version %d, want 3", got.Patient.Version)
	}

	sp, _, err := db.LoadPatient(ctx, id, "test")
	if err != nil || sp.Record.Version != 3 || sp.Record.Phone != "+37360000002" {
		t.Fatalf("stored patient = %v, %v; want version 3 with b's phone", sp, err)
	}
	evs, err := db.OutboxEvents(ctx, persistence.PatientKind, id)
	if err != nil || len(evs) != 3 {
		t.Fatalf("outbox = %d events (%v), want 3: one per successful write", len(evs), err)
	}
	for i, e := range evs {
		if e.AggregateVersion != int64(i+1) {
			t.Fatalf("outbox event %d has version %d", i, e.AggregateVersion)
		}
	}
}

// BenchmarkMemoryPerActivePatient registers b.N patients through one
// member and keeps them active (registration activates the grain; they do
// not passivate during the run), then reports the heap they hold per
// patient. It runs once in make test (-benchtime 1x); the figure in the
// README comes from -benchtime 100000x.
func BenchmarkMemoryPerActivePatient(b *testing.B) {
	db := pgtest.New(b)
	nodes := startGroup(b, memberConfigIdle(b, db, fmt.Sprintf("mem-%d", time.Now().UnixNano()), nil, time.Hour))
	c := nodes[0].Cluster
	// Warm: the first grain's code paths, pools and caches.
	if _, err := register(c, "00000000-0000-4000-8000-999999999999", idnp(999_999_999)); err != nil {
		b.Fatal(err)
	}
	before := memstat.LiveHeap()
	b.ResetTimer()
	ids := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 64 {
		wg.Go(func() {
			for i := range ids {
				if _, err := register(c, fmt.Sprintf("00000000-0000-4000-8000-%012d", i), idnp(i)); err != nil {
					select {
					case errs <- fmt.Errorf("register %d: %w", i, err):
					default:
					}
				}
			}
		})
	}
	for i := range b.N {
		ids <- i
	}
	close(ids)
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	after := memstat.LiveHeap()
	b.ReportMetric(float64(after-before)/float64(b.N), "heap-B/patient")
	runtime.KeepAlive(nodes)
}
