package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/caregrid/caregrid/cluster/devcerts"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestPlainMailOnlyToALoopbackRelayWithoutCredentials(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		credentials bool
		plain       bool
	}{
		{"127.0.0.1:25", false, true},
		{"localhost:2525", false, true},
		{"[::1]:25", false, true},
		{"127.0.0.1:25", true, false}, // a password never travels in the clear
		{"mail.hospital.example:587", false, false},
		{"10.0.0.5:25", false, false},
		{"no-port", false, false},
	} {
		if got := plainAllowed(tc.addr, tc.credentials); got != tc.plain {
			t.Errorf("plainAllowed(%q, credentials %v) = %v, want %v", tc.addr, tc.credentials, got, tc.plain)
		}
	}
}

// relay is a real SMTP server (go-smtp) on loopback that keeps what it
// was sent, how (over TLS or not) and by whom.
type relay struct {
	addr string
	got  chan delivery
}

type delivery struct {
	tls      bool
	username string
	to       string
}

func startRelay(t *testing.T, tlsConfig *tls.Config) *relay {
	t.Helper()
	r := &relay{got: make(chan delivery, 4)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &relaySession{r: r, c: c}, nil }))
	srv.Domain, srv.TLSConfig = "localhost", tlsConfig
	srv.ErrorLog = log.New(io.Discard, "", 0) // the refused attempts are expected
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

type relaySession struct {
	r        *relay
	c        *smtp.Conn
	username string
	to       string
}

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *relaySession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if password != "relay-secret" {
			return errors.New("wrong password")
		}
		s.username = username
		return nil
	}), nil
}
func (s *relaySession) Reset()                                    {}
func (s *relaySession) Logout() error                             { return nil }
func (s *relaySession) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = to; return nil }
func (s *relaySession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.r.got <- delivery{tls: isTLS, username: s.username, to: s.to}
	return nil
}

// TestSMTPMailerInsistsOnSTARTTLS: with credentials (as to any relay not
// on loopback) the mailer sends only over STARTTLS with a certificate it
// trusts: a relay without TLS gets nothing, and one with TLS gets the
// message over TLS, authenticated.
func TestEmailInsistsOnSTARTTLS(t *testing.T) {
	files, err := devcerts.Generate(t.TempDir(), 1, "relay.hospital.example", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.Members[0].Cert, files.Members[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	send := func(e Email) error {
		_, err := e.Send(context.Background(), Message{ID: "n-1", To: "ana@hospital.example", Subject: "Reset", Text: "link"})
		return err
	}

	plain := startRelay(t, nil)
	m := Email{Addr: plain.addr, From: "caregrid <no-reply@hospital.example>", Username: "caregrid", Password: "relay-secret",
		TLS: &tls.Config{RootCAs: roots, ServerName: "relay.hospital.example"}}
	if err := send(m); err == nil || !strings.Contains(strings.ToLower(err.Error()), "starttls") {
		t.Fatalf("Send to a relay without STARTTLS = %v, want a refusal naming STARTTLS", err)
	}
	if len(plain.got) != 0 {
		t.Fatal("a relay without TLS received the message")
	}

	secure := startRelay(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	untrusted := m
	untrusted.Addr, untrusted.TLS = secure.addr, nil // the system's roots do not know the test CA
	if err := send(untrusted); err == nil {
		t.Fatal("Send to a relay whose certificate is not trusted succeeded")
	}
	m.Addr = secure.addr
	if err := send(m); err != nil {
		t.Fatalf("Send over STARTTLS: %v", err)
	}
	if d := <-secure.got; !d.tls || d.username != "caregrid" || d.to != "ana@hospital.example" {
		t.Fatalf("the relay got %+v, want the message over TLS from caregrid to ana", d)
	}
	if len(secure.got) != 0 {
		t.Fatal("the untrusted attempt delivered a message")
	}
}
