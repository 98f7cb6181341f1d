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

// PeerName is the DNS name every member certificate carries and every
// member verifies on the peer it dials. Members are dialled by address
// (pod IPs change), so the name, not the address, is what a certificate
// proves; the cluster's own CA is what makes the name mean "a member".
const PeerName = "member.caregrid.internal"

// TLS is the remoting's mutual TLS: each member presents CertFile/KeyFile,
// and accepts a connection, or completes a dial, only with a peer whose
// certificate the CA in CAFile signed for PeerName. Files are read at
// start; rotating them needs a restart.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

// credentials are the remoting's server and dial credentials.
func (t *TLS) credentials() (grpc.ServerOption, grpc.DialOption, error) {
	if t.CAFile == "" || t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("cluster: mutual TLS needs a CA file, a certificate file and a key file")
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("cluster: TLS CA %s holds no PEM certificate", t.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: TLS member certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: TLS member certificate: %w", err)
	}
	// A member whose own certificate would be refused by its peers should
	// not start and fail every call: check it the way they will.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: PeerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, fmt.Errorf("cluster: TLS member certificate is not valid for %s under the CA: %w", PeerName, err)
	}
	server := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		// The client's certificate must also be a member's: signed by the
		// CA is checked by ClientAuth, the name here.
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			for _, chain := range chains {
				if len(chain) > 0 && chain[0].VerifyHostname(PeerName) == nil {
					return nil
				}
			}
			return fmt.Errorf("peer certificate is not for %s", PeerName)
		},
	}
	client := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: PeerName}
	return grpc.Creds(credentials.NewTLS(server)), grpc.WithTransportCredentials(credentials.NewTLS(client)), nil
}

// remoteOptions configure the remoting's gRPC server and dials.
//
// proto.actor's remoting service has two unary methods, ListProcesses and
// GetProcessDiagnostics, whose handlers panic ("implement me"), and gRPC
// does not recover a handler's panic: one call would end the process. Only
// the Receive stream is served; every unary call is refused.
func remoteOptions(t *TLS) ([]remote.ConfigOption, error) {
	server := []grpc.ServerOption{grpc.UnaryInterceptor(refuseUnary)}
	if t == nil {
		return []remote.ConfigOption{remote.WithServerOptions(server...)}, nil
	}
	creds, dial, err := t.credentials()
	if err != nil {
		return nil, err
	}
	return []remote.ConfigOption{remote.WithServerOptions(append(server, creds)...), remote.WithDialOptions(dial)}, nil
}

func refuseUnary(_ context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	return nil, status.Errorf(codes.Unimplemented, "%s is not served", info.FullMethod)
}
