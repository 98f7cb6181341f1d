package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
	"github.com/caregrid/caregrid/internal/await"
)

func TestTheDetectorDropsTheSilentAndAsksTheSuspect(t *testing.T) {
	now := time.Now()
	s := &suspects{closed: map[string]time.Time{}, stalled: map[string]time.Time{}}
	s.closed["lost:1"] = now.Add(-100 * time.Millisecond)
	s.closed["lost-before:1"] = now.Add(-time.Second) // then it answered
	s.stalled["stalled:1"] = now.Add(-100 * time.Millisecond)
	for _, c := range []struct {
		address string
		heard   time.Time
		want    verdict
	}{
		{"quiet:1", now.Add(-300 * time.Millisecond), alive},
		{"quiet:1", now.Add(-silentFor), drop},
		{"lost:1", now.Add(-300 * time.Millisecond), dropUnlessAnswers},
		{"lost-before:1", now.Add(-300 * time.Millisecond), alive},
		// A stalled request asks at once; the member is out if it is
		// silent as well, but not for one slow answer.
		{"stalled:1", now.Add(-300 * time.Millisecond), askNow},
		{"stalled:1", now.Add(-stalledSilence), dropUnlessAnswers},
		{"stalled:1", now.Add(-50 * time.Millisecond), alive},
	} {
		if got := s.judge(c.address, c.heard, now); got != c.want {
			t.Errorf("%s heard %v ago: %v, want %v", c.address, now.Sub(c.heard), got, c.want)
		}
	}
	s.clear("lost:1")
	if got := s.judge("lost:1", now.Add(-300*time.Millisecond), now); got != alive {
		t.Errorf("after an answer the lost member is %v", got)
	}
}

func TestALoopThatRanLateWasPaused(t *testing.T) {
	var g loopGap
	now := time.Now()
	if _, paused := g.paused(now); paused {
		t.Fatal("the first beat counts as a pause")
	}
	if _, paused := g.paused(now.Add(heartbeat)); paused {
		t.Fatal("a beat on time counts as a pause")
	}
	if gap, paused := g.paused(now.Add(heartbeat + silentFor + time.Millisecond)); !paused || gap <= silentFor {
		t.Fatalf("a beat %v late: paused %v", gap, paused)
	}
}

// freeAddress is a loopback address no one listens on yet.
func freeAddress(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1", l.Addr().(*net.TCPAddr).Port
}

// Two static peers in one process (StartGroup): one stops answering the
// heartbeats while it runs on (its membership actor is stopped, as if the
// process hung). The other drops it after silentFor, and the silent one,
// which still asks, hears MemberDropped and is told to rejoin.
func TestAPeerThatStopsAnsweringIsDroppedAndHearsIt(t *testing.T) {
	certs, err := devcerts.Generate(t.TempDir(), 2, PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	cfgs := make([]Config, 2)
	dropped := make([]chan struct{}, 2)
	for i := range cfgs {
		host, port := freeAddress(t)
		peers = append(peers, fmt.Sprintf("%s:%d", host, port))
		dropped[i] = make(chan struct{})
		var once sync.Once
		m := certs.Members[i]
		cfgs[i] = Config{Name: "detector-test", Host: host, Port: port, Kinds: []*actorcluster.Kind{whereKind()},
			TLS:       &TLS{CAFile: certs.CA, CertFile: m.Cert, KeyFile: m.Key},
			OnDropped: func() { once.Do(func() { close(dropped[i]) }) }}
	}
	for i := range cfgs {
		cfgs[i].Peers = peers
	}
	nodes, err := StartGroup(context.Background(), cfgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Stop(false)
		}
	})
	for i, n := range nodes {
		await.Until(t, fmt.Sprintf("member %d to see both", i), 30*time.Second, func() bool { return n.Members() == 2 })
	}
	live, silent := nodes[0], nodes[1]
	silent.System.Root.Stop(silent.System.NewLocalPID(membershipActor))

	await.Until(t, "the live member to drop the silent one", 30*time.Second, func() bool { return live.Members() == 1 })
	select {
	case <-dropped[1]:
	case <-time.After(30 * time.Second):
		t.Fatal("the dropped member was never told")
	}
	select {
	case <-dropped[0]:
		t.Fatal("the live member was told it was dropped")
	default:
	}
	// The live member serves every identity itself now.
	if got := ask(t, live); got != live.Address() {
		t.Fatalf("the grain answered from %s, not the live member", got)
	}
}
