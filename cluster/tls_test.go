package cluster

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/caregrid/caregrid/cluster/devcerts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// whereKind answers with the address of the member it runs on.
func whereKind() *actorcluster.Kind {
	return actorcluster.NewKind("where", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*wrapperspb.StringValue); ok {
			ctx.Respond(wrapperspb.String(ctx.ActorSystem().Address()))
		}
	}))
}

// ask calls a grain on node and returns the address of the member that answered.
func ask(t *testing.T, node *Node) string {
	t.Helper()
	res, err := node.Cluster.Request("some-id", "where", wrapperspb.String("?"))
	if err != nil {
		t.Fatalf("grain call: %v", err)
	}
	return res.(*wrapperspb.StringValue).GetValue()
}

// One member per test process: proto.actor's remote.Start sets gRPC's
// global logger while another member's server reads it (a data race under
// -race). Members calling each other over mutual TLS are tested with real
// processes.
func TestRemotingIsMutualTLSAndRefusesOthers(t *testing.T) {
	dir := t.TempDir()
	certs, err := devcerts.Generate(dir, 1, PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := devcerts.Generate(filepath.Join(dir, "stranger"), 1, PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	m := certs.Members[0]
	ctx := context.Background()
	node, err := Start(ctx, Config{Name: "tls-test", Kinds: []*actorcluster.Kind{whereKind()},
		TLS: &TLS{CAFile: certs.CA, CertFile: m.Cert, KeyFile: m.Key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Stop(false) })
	target := node.Address()
	if got := ask(t, node); got != target {
		t.Fatalf("grain answered from %s", got)
	}

	listProcesses := func(creds grpc.DialOption) error {
		conn, err := grpc.Dial(target, creds)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = remote.NewRemotingClient(conn).ListProcesses(cctx, &remote.ListProcessesRequest{})
		return err
	}
	tlsCreds := func(ca string, m devcerts.Member) grpc.DialOption {
		cfg, err := devcerts.ClientTLS(ca, m, PeerName)
		if err != nil {
			t.Fatal(err)
		}
		return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
	}
	// A plain client, and a TLS client whose certificate another CA signed,
	// do not get through the handshake.
	if err := listProcesses(grpc.WithTransportCredentials(insecure.NewCredentials())); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext ListProcesses: %v, want the connection refused (Unavailable)", err)
	}
	if err := listProcesses(tlsCreds(certs.CA, stranger.Members[0])); status.Code(err) != codes.Unavailable {
		t.Errorf("ListProcesses with a stranger's certificate: %v, want Unavailable", err)
	}
	// A member's own certificate gets through the handshake, and even then
	// the method (which panics in proto.actor) is refused, not run.
	if err := listProcesses(tlsCreds(certs.CA, certs.Members[0])); status.Code(err) != codes.Unimplemented {
		t.Errorf("ListProcesses as a member: %v, want Unimplemented", err)
	}
	// The node is still up and serving its grains.
	if err := node.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, node); got != target {
		t.Fatalf("after the refused calls the grain answered from %q", got)
	}
}

func TestTLSSettingsAreCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	certs, err := devcerts.Generate(filepath.Join(dir, "a"), 1, PeerName, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := devcerts.Generate(filepath.Join(dir, "b"), 1, "someone.else", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := certs.Members[0]
	for _, c := range []struct {
		name string
		tls  TLS
		want string
	}{
		{"no key", TLS{CAFile: certs.CA, CertFile: m.Cert}, "needs a CA file"},
		{"certificate of another CA", TLS{CAFile: certs.CA, CertFile: other.Members[0].Cert, KeyFile: other.Members[0].Key}, "not valid under the CA"},
		{"certificate for another name", TLS{CAFile: other.CA, CertFile: other.Members[0].Cert, KeyFile: other.Members[0].Key}, "names no caregrid role"},
		{"key of another certificate", TLS{CAFile: certs.CA, CertFile: m.Cert, KeyFile: other.Members[0].Key}, "private key does not match"},
		{"CA file not PEM", TLS{CAFile: m.Key + ".missing", CertFile: m.Cert, KeyFile: m.Key}, "no such file"},
	} {
		if _, _, _, err := c.tls.credentials(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	for _, host := range []string{"127.0.0.1", "192.0.2.1"} {
		if _, err := Start(context.Background(), Config{Name: "x", Host: host}); err == nil || !strings.Contains(err.Error(), "mutual TLS only") {
			t.Errorf("plaintext remoting on %s: %v, want it refused", host, err)
		}
	}
}
