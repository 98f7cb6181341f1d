package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TLS is the remoting's mutual TLS: each node presents CertFile/KeyFile,
// whose name says what it is (see PeerName), and accepts a connection, or
// completes a dial, only with a peer whose certificate the CA in CAFile
// signed for a name it may talk to: a member talks to members, edges and
// services (it answers their requests over its own dials); an edge or a
// service talks to members only. Files are read at start; rotating them
// needs a restart.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

// credentials are the remoting's server and dial credentials, and what
// this node's own certificate says it is.
func (t *TLS) credentials() (grpc.ServerOption, grpc.DialOption, Peer, error) {
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, Peer{}, errors.New("cluster: mutual TLS needs a CA file, a certificate file and a key file")
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, Peer{}, fmt.Errorf("cluster: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, Peer{}, fmt.Errorf("cluster: TLS CA %s holds no PEM certificate", t.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, Peer{}, fmt.Errorf("cluster: TLS certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, nil, Peer{}, fmt.Errorf("cluster: TLS certificate: %w", err)
	}
	// A node whose own certificate would be refused by its peers should
	// not start and fail every call: check it the way they will.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, Peer{}, fmt.Errorf("cluster: TLS certificate %s is not valid under the CA: %w", t.CertFile, err)
	}
	self, err := certPeer(leaf)
	if err != nil {
		return nil, nil, Peer{}, fmt.Errorf("cluster: TLS certificate %s: %w", t.CertFile, err)
	}
	// accept is who this node talks to, either way round.
	accept := func(p Peer) error {
		if p.Kind == PeerMember || self.Kind == PeerMember {
			return nil
		}
		return fmt.Errorf("a %s talks to members only, not to a %s", self.Kind, p.Kind)
	}
	server := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		// Signed by the CA is checked by ClientAuth; the name here.
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			p, err := certPeer(chains[0][0])
			if err != nil {
				return err
			}
			return accept(p)
		},
	}
	client := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool,
		// Peers are dialled by address (pod IPs change): the name, not the
		// address, is what a certificate proves, so the chain and the name
		// are checked here rather than against the dialled host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			p, err := certPeer(leaf)
			if err != nil {
				return err
			}
			return accept(p)
		},
	}
	return grpc.Creds(credentials.NewTLS(server)), grpc.WithTransportCredentials(credentials.NewTLS(client)), self, nil
}

// remoteOptions configure the remoting's gRPC server and dials.
//
// proto.actor's remoting service has two unary methods, ListProcesses and
// GetProcessDiagnostics, whose handlers panic ("implement me"), and gRPC
// does not recover a handler's panic: one call would end the process. Only
// the Receive stream is served; every unary call is refused.
//
// Every inbound stream goes through in's interceptor and every message
// through its gate, so that grains learn who sent it (see Inbound.gate).
func remoteOptions(t *TLS, in *Inbound) ([]remote.ConfigOption, Peer, error) {
	if t == nil {
		return nil, Peer{}, errors.New("cluster: remoting is mutual TLS only: give TLS (devcerts makes a set)")
	}
	creds, dial, self, err := t.credentials()
	if err != nil {
		return nil, Peer{}, err
	}
	server := []grpc.ServerOption{grpc.UnaryInterceptor(refuseUnary), grpc.StreamInterceptor(in.interceptStream), creds}
	return []remote.ConfigOption{remote.WithServerOptions(server...), remote.WithDialOptions(dial),
		func(c *remote.Config) { c.InboundGate = in.gate }}, self, nil
}

func refuseUnary(_ context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	return nil, status.Errorf(codes.Unimplemented, "%s is not served", info.FullMethod)
}
