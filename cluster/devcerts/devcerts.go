// Package devcerts makes a throwaway certificate authority and member
// certificates for the cluster's mutual TLS, for development and tests
// (`caregrid dev-certs`). Production certificates come from the hospital's
// own PKI (or cert-manager); these keys sit unencrypted on disk.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files names what Generate wrote.
type Files struct {
	CA      string   // the CA's certificate (every member trusts it)
	CAKey   string   // the CA's key (keep it to issue more members)
	Members []Member // one certificate and key per member
}

// Member is one member's certificate and key.
type Member struct{ Cert, Key string }

// Generate writes ca.crt, ca.key and member-N.crt/.key (N from 1) into dir.
// Every member certificate names dnsName (the name peers verify) and the
// hosts given, and is good for both ends of a connection.
func Generate(dir string, members int, dnsName string, hosts []string) (Files, error) {
	if members < 1 {
		return Files{}, errors.New("devcerts: at least one member")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "caregrid development cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, err
	}
	files := Files{CA: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key")}
	if err := write(files.CA, files.CAKey, caDER, caKey); err != nil {
		return Files{}, err
	}
	for i := 1; i <= members; i++ {
		m, err := issue(ca, caKey, dir, fmt.Sprintf("member-%d", i), dnsName, hosts, now.AddDate(0, 3, 0))
		if err != nil {
			return Files{}, err
		}
		files.Members = append(files.Members, m)
	}
	return files, nil
}

// Issue writes <name>.crt/.key into dir: a certificate for dnsName (and
// hosts) signed by the CA whose certificate and key are in caCert and
// caKey (as Generate wrote them). Edges (cluster.EdgeName) and internal
// services (cluster.ServiceName) get theirs this way.
func Issue(caCert, caKey, dir, name, dnsName string, hosts []string) (Member, error) {
	pair, err := tls.LoadX509KeyPair(caCert, caKey)
	if err != nil {
		return Member{}, fmt.Errorf("devcerts: the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return Member{}, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return Member{}, errors.New("devcerts: the CA key is not ECDSA")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Member{}, err
	}
	return issue(ca, key, dir, name, dnsName, hosts, time.Now().AddDate(0, 3, 0))
}

func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, dir, name, dnsName string, hosts []string, notAfter time.Time) (Member, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Member{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{dnsName},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return Member{}, err
	}
	m := Member{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	if err := write(m.Cert, m.Key, der, key); err != nil {
		return Member{}, err
	}
	return m, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// write stores a certificate (0644) and its key (0600) as PEM.
func write(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// ClientTLS is a TLS 1.3 client configuration that presents member m's
// certificate, trusts the CA in caFile and expects serverName: what a
// test needs to dial a member the way a peer does.
func ClientTLS(caFile string, m Member, serverName string) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("devcerts: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(m.Cert, m.Key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: serverName}, nil
}

// Local is a single node's own mutual TLS, so that even a node alone never
// listens for remoting in plaintext: a CA and one member certificate for
// dnsName and hosts, made in dir at first use and made again when the
// certificate has less than 30 days left. The CA's key is not kept (no one
// else will ever join this node's CA), and every file is readable by its
// owner only: a local process without them cannot open the remoting.
func Local(dir, dnsName string, hosts []string) (ca string, m Member, err error) {
	ca, m = filepath.Join(dir, "ca.crt"), Member{Cert: filepath.Join(dir, "member-1.crt"), Key: filepath.Join(dir, "member-1.key")}
	if pair, err := tls.LoadX509KeyPair(m.Cert, m.Key); err == nil {
		if cert, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && time.Until(cert.NotAfter) > 30*24*time.Hour {
			if _, err := os.Stat(ca); err == nil {
				return ca, m, nil
			}
		}
	}
	files, err := Generate(dir, 1, dnsName, hosts)
	if err != nil {
		return "", Member{}, err
	}
	if err := os.Remove(files.CAKey); err != nil {
		return "", Member{}, err
	}
	for _, f := range []string{files.CA, files.Members[0].Cert, files.Members[0].Key} {
		if err := os.Chmod(f, 0o600); err != nil {
			return "", Member{}, err
		}
	}
	return files.CA, files.Members[0], nil
}
