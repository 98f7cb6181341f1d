//go:build consul

// These tests run a real Consul agent (bin/consul, from `make consul`,
// which `make test` builds alongside the other tests) and caregrid
// processes that find each other through it.

package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
)

// consulAgent is a Consul dev agent on loopback ports of its own.
type consulAgent struct {
	t    *testing.T
	args []string
	http string
	cmd  *exec.Cmd
}

func startConsul(t *testing.T) *consulAgent {
	t.Helper()
	bin, err := filepath.Abs("../../bin/consul")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Consul agent at %s: run make consul (make test does): %v", bin, err)
	}
	port := func() string { _, p, _ := net.SplitHostPort(freeAddr(t)); return p }
	a := &consulAgent{t: t}
	httpPort := port()
	a.http = "127.0.0.1:" + httpPort
	a.args = []string{bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-http-port", httpPort,
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-server-port", port(), "-serf-lan-port", port(), "-serf-wan-port", port(),
		"-log-level", "warn"}
	a.start()
	t.Cleanup(a.stop)
	return a
}

func (a *consulAgent) start() {
	a.t.Helper()
	a.cmd = exec.Command(a.args[0], a.args[1:]...)
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	await.Until(a.t, "Consul elects itself", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + a.http + "/v1/status/leader")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var leader string
		return json.NewDecoder(resp.Body).Decode(&leader) == nil && leader != ""
	})
}

func (a *consulAgent) stop() {
	if a.cmd != nil {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		_ = a.cmd.Wait()
		a.cmd = nil
	}
}

// instances is what Consul's catalog lists for the cluster's service.
func (a *consulAgent) instances() []string {
	resp, err := http.Get("http://" + a.http + "/v1/catalog/service/caregrid-caregrid")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var list []struct{ ServiceID string }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ServiceID)
	}
	slices.Sort(ids)
	return ids
}

// memberIDs is a node's view of the members' ids.
func memberIDs(t *testing.T, s *testServer, token string) []string {
	r := s.do("GET", "/v1/ops/cluster", token, nil)
	expect(t, "cluster view", r, 200)
	var v cluster.View
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range v.Members {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// Two members find each other through a real Consul: a member killed with
// SIGKILL is dropped (its connection is lost and it does not answer) and
// its grains served by the other;
// restarted, it rejoins; Consul itself restarted (a dev agent forgets every
// registration), the members register again with the same ids and nobody
// is dropped; a member stopped with SIGTERM deregisters at once.
func TestConsulMembersSurviveAKillAndAConsulRestart(t *testing.T) {
	agent := startConsul(t)
	pc := startCluster(t, 2, []string{"--cluster-provider", "consul", "--consul-addr", agent.http, "--consul-ttl", "2s"})
	a := &testServer{t: t, db: pc.db, base: pc.nodes[0].base, tokens: map[string]string{}}
	b := &testServer{t: t, db: pc.db, base: pc.nodes[1].base, tokens: a.tokens}
	desk := a.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	ops := a.token(messages.Role_ROLE_ADMIN, "ops-1")
	if got := agent.instances(); len(got) != 2 {
		t.Fatalf("Consul lists %v, want two members", got)
	}
	var patients []string
	for range 12 {
		r := b.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
		expect(t, "register through b", r, 201)
		patients = append(patients, r.json(t)["id"].(string))
	}

	pc.nodes[0].kill()
	dropped := await.Until(t, "b drops the killed member", membershipLimit, func() bool { return clusterMembers(b.base) == 1 })
	for _, id := range patients {
		expect(t, "read through b after the kill", b.do("GET", "/v1/patients/"+id, desk, nil), 200)
	}
	t.Logf("kill -9: dropped from b's topology after %v (TTL 2 s, grace 3 s)", dropped.Round(time.Millisecond))
	pc.nodes[0].start()
	for i, n := range pc.nodes {
		await.Until(t, "node "+strconv.Itoa(i)+" sees both again", membershipLimit, func() bool { return clusterMembers(n.base) == 2 })
	}
	before := memberIDs(t, b, ops)

	// Consul restarts and forgets everything; the members register again.
	agent.stop()
	agent.start()
	await.Until(t, "both members are registered again", membershipLimit, func() bool { return slices.Equal(agent.instances(), before) })
	// Nobody is dropped: watched over TTL and grace (2 s + 3 s) and more,
	// the window in which a drop would happen.
	await.Throughout(t, "both nodes seeing the same two members", 8*time.Second, func() bool {
		return slices.Equal(memberIDs(t, a, ops), before) && slices.Equal(memberIDs(t, b, ops), before)
	})
	for _, id := range patients {
		expect(t, "read through a after Consul's restart", a.do("GET", "/v1/patients/"+id, desk, nil), 200)
	}

	// a is paused: b stops hearing its heartbeats, drops it (before
	// Consul's TTL would) and blocks its id. Resumed, a notices (its
	// heartbeat loop ran late; b would answer it MemberDropped), drops its
	// activations and rejoins under a new member id by itself, without
	// exiting.
	oldIDs := memberIDs(t, a, ops)
	_ = pc.nodes[0].cmd.Process.Signal(syscall.SIGSTOP)
	paused := await.Until(t, "b drops the paused member", membershipLimit, func() bool { return clusterMembers(b.base) == 1 })
	t.Logf("SIGSTOP: dropped from b's topology after %v (TTL 2 s)", paused.Round(time.Millisecond))
	_ = pc.nodes[0].cmd.Process.Signal(syscall.SIGCONT)
	await.Until(t, "a rejoins by itself", membershipLimit, func() bool { return nodeMetric(a.base, "caregrid_cluster_rejoins_total") == 1 })
	select {
	case <-pc.nodes[0].done:
		t.Fatalf("the dropped member exited (%v), want it to rejoin in its process", pc.nodes[0].waitErr)
	default:
	}
	for i, n := range pc.nodes {
		await.Until(t, "node "+strconv.Itoa(i)+" sees the rejoined member", membershipLimit, func() bool { return clusterMembers(n.base) == 2 })
	}
	if newIDs := memberIDs(t, b, ops); slices.Equal(newIDs, oldIDs) || len(newIDs) != 2 {
		t.Fatalf("after rejoining, b sees %v; want two members, a under a new id (was %v)", newIDs, oldIDs)
	}

	// SIGTERM: b deregisters before it stops; the dropped a deregistered
	// its old id as it stopped.
	pc.nodes[1].terminate()
	var aID string
	for _, id := range memberIDs(t, a, ops) {
		if !slices.Contains(oldIDs, id) {
			aID = id
		}
	}
	if got := agent.instances(); !slices.Equal(got, []string{aID}) {
		t.Fatalf("after b's SIGTERM Consul lists %v, want only a's new id %s", got, aID)
	}
}

// The fault test of the static peers, with the members finding each other
// through Consul: three members under load, each killed with SIGKILL in
// turn and restarted (a new member id each time).
func TestConsulClusterUnderLoadSurvivesKills(t *testing.T) {
	agent := startConsul(t)
	pc := startCluster(t, 3, []string{"--cluster-provider", "consul", "--consul-addr", agent.http, "--consul-ttl", "1s"})
	load := startClusterLoad(t, pc.nodes, pc.db)
	load.progressed("before the first kill")
	for _, victim := range []int{1, 2, 0} {
		before := load.failed()
		pc.nodes[victim].kill()
		dropped := pc.waitMembers(t, "the others drop node "+strconv.Itoa(victim), 2, victim)
		pc.nodes[victim].start()
		pc.waitMembers(t, "every node sees the restarted node "+strconv.Itoa(victim), 3, -1)
		load.progressed("after node " + strconv.Itoa(victim) + " came back")
		t.Logf("kill -9 of node %d: dropped after %v; %d failed attempts (each retried on another node) until the load went on after its restart",
			victim, dropped.Round(time.Millisecond), load.failed()-before)
	}
	load.stopAndCheck()
}
