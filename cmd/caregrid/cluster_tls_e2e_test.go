package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
	"golang.org/x/net/http2"
)

// A real node with mutual-TLS remoting: a plaintext gRPC call and one with a
// certificate from another CA are refused at the handshake; a member's
// certificate gets through, and the method proto.actor leaves unimplemented
// (its handler panics, which would end the process) is refused. The node
// keeps serving throughout.
func TestClusterRemotingRefusesPeersWithoutAMemberCertificate(t *testing.T) {
	dir := t.TempDir()
	certs, err := devcerts.Generate(filepath.Join(dir, "cluster"), 1, cluster.PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := devcerts.Generate(filepath.Join(dir, "stranger"), 1, cluster.PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	remoting := freeAddr(t)
	_, port, _ := net.SplitHostPort(remoting)
	m := certs.Members[0]
	node, _ := startProcess(t, "--cluster-port", port,
		"--cluster-tls-ca", certs.CA, "--cluster-tls-cert", m.Cert, "--cluster-tls-key", m.Key)

	listProcesses := func(cfg *tls.Config) (string, error) { return probeRemoting(remoting, cfg) }
	withCert := func(m devcerts.Member) *tls.Config {
		cfg, err := devcerts.ClientTLS(certs.CA, m, cluster.PeerName)
		if err != nil {
			t.Fatal(err)
		}
		cfg.NextProtos = []string{"h2"}
		return cfg
	}
	if st, err := listProcesses(nil); err == nil {
		t.Errorf("plaintext ListProcesses answered (grpc-status %q)", st)
	}
	if st, err := listProcesses(withCert(stranger.Members[0])); err == nil {
		t.Errorf("ListProcesses with another CA's certificate answered (grpc-status %q)", st)
	}
	if st, err := listProcesses(withCert(m)); err != nil || st != "12" {
		t.Errorf("ListProcesses as a member: grpc-status %q, %v; want 12 (Unimplemented)", st, err)
	}
	resp, err := http.Get(node.base + "/readyz")
	if err != nil {
		t.Fatalf("the node stopped serving: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz = %d", resp.StatusCode)
	}
	if err := node.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the process is gone: %v", err)
	}
}

// probeRemoting calls the remoting's ListProcesses at addr (plaintext when
// cfg is nil) and returns the grpc-status it got. It speaks gRPC's wire
// format over HTTP/2 itself: a gRPC client in this process would leave
// transport goroutines behind for the tests after it.
func probeRemoting(addr string, cfg *tls.Config) (string, error) {
	tr := &http2.Transport{TLSClientConfig: cfg}
	if cfg == nil { // plaintext HTTP/2 (h2c)
		tr = &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	}
	defer tr.CloseIdleConnections()
	scheme := map[bool]string{true: "http", false: "https"}[cfg == nil]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// One gRPC message frame: not compressed, zero length (an empty request).
	req, _ := http.NewRequestWithContext(ctx, "POST", scheme+"://"+addr+"/remote.Remoting/ListProcesses", bytes.NewReader(make([]byte, 5)))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return "", err
	}
	return resp.Trailer.Get("Grpc-Status") + resp.Header.Get("Grpc-Status"), nil
}

// TestASingleNodeRemotingIsMutualTLSWithItsOwnCA: the default single node
// (no --cluster-tls-* flags) makes its own CA and certificate in its data
// directory, readable by its owner only and without the CA's key, and
// serves its remoting only to a holder of that certificate: a plaintext
// peer and one with another CA's certificate are refused at the handshake.
// Restarted, it keeps its certificate.
func TestASingleNodeRemotingIsMutualTLSWithItsOwnCA(t *testing.T) {
	remoting := freeAddr(t)
	_, port, _ := net.SplitHostPort(remoting)
	node, _ := startProcess(t, "--cluster-port", port)
	dir := filepath.Join(filepath.Dir(node.log), "cluster-tls")
	own := devcerts.Member{Cert: filepath.Join(dir, "member-1.crt"), Key: filepath.Join(dir, "member-1.key")}
	for _, f := range []string{"ca.crt", "member-1.crt", "member-1.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want a file readable by its owner only", f, err, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the CA's key is kept (%v): anyone who reads it could issue members", err)
	}
	stranger, err := devcerts.Generate(t.TempDir(), 1, cluster.PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	as := func(ca string, m devcerts.Member) *tls.Config {
		cfg, err := devcerts.ClientTLS(ca, m, cluster.PeerName)
		if err != nil {
			t.Fatal(err)
		}
		cfg.NextProtos = []string{"h2"}
		return cfg
	}
	if st, err := probeRemoting(remoting, nil); err == nil {
		t.Errorf("plaintext remoting answered (grpc-status %q)", st)
	}
	if st, err := probeRemoting(remoting, as(stranger.CA, stranger.Members[0])); err == nil {
		t.Errorf("remoting with another CA's certificate answered (grpc-status %q)", st)
	}
	if st, err := probeRemoting(remoting, as(filepath.Join(dir, "ca.crt"), own)); err != nil || st != "12" {
		t.Errorf("remoting with the node's own certificate: grpc-status %q, %v; want 12 (Unimplemented)", st, err)
	}
	before, err := os.ReadFile(own.Cert)
	if err != nil {
		t.Fatal(err)
	}
	node.terminate()
	node.start()
	if after, err := os.ReadFile(own.Cert); err != nil || !bytes.Equal(before, after) {
		t.Fatalf("restarted, the node changed its certificate (%v)", err)
	}
	if st, err := probeRemoting(remoting, nil); err == nil {
		t.Errorf("plaintext remoting answered after the restart (grpc-status %q)", st)
	}
	expect(t, "readyz", (&testServer{t: t, base: node.base}).do("GET", "/readyz", "", nil), 200)
}
