package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/edge/identity"
)

// The provider a node runs gets the mailer its flags ask for.
func TestServeConfiguresTheProvidersMailer(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for name, tt := range map[string]struct {
		args []string
		want string
	}{
		"smtp":               {[]string{"--smtp-addr", "mail.hospital.example:587", "--smtp-from", "caregrid <no-reply@hospital.example>"}, "smtp"},
		"development":        {[]string{"--dev-auth"}, "log"},
		"production no smtp": {nil, "none"},
	} {
		cfg, err := serveFlags(append([]string{"--data-dir", t.TempDir()}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		ic := identityConfig(cfg, nil, testMaster, "http://127.0.0.1:8080", nil, logger)
		nc := notifyConfigOf(cfg, "http://127.0.0.1:8080", logger)
		got := "none"
		switch m := nc.Email.(type) {
		case notify.Email:
			got = "smtp"
			if m.Addr != "mail.hospital.example:587" || m.From != "caregrid <no-reply@hospital.example>" || ic.Mailer != nil {
				t.Errorf("%s: SMTP %+v, login pages' mailer %T (want the queue the node sets)", name, m, ic.Mailer)
			}
		case notify.LogSender:
			got = "log"
			if _, ok := ic.Mailer.(identity.LogMailer); !ok {
				t.Errorf("%s: login pages' mailer %T, want the log", name, ic.Mailer)
			}
		}
		if got != tt.want || ic.Issuer != "http://127.0.0.1:8080/oidc" {
			t.Errorf("%s: mailer %s, issuer %s; want %s", name, got, ic.Issuer, tt.want)
		}
	}
}

// TestMembersOfAClusterNeedMutualTLS: remoting is never plaintext. A single
// node makes its own certificate; members that find each other (static
// peers, Consul) or an edge node must be given the cluster's.
func TestMembersOfAClusterNeedMutualTLS(t *testing.T) {
	for name, args := range map[string][]string{
		"static peers": {"--cluster-peers", "127.0.0.1:7101,127.0.0.1:7102", "--cluster-port", "7101"},
		"consul":       {"--cluster-provider", "consul"},
		"edge":         {"--role", "edge", "--cluster-peers", "127.0.0.1:7101"},
	} {
		_, err := serveFlags(append([]string{"--data-dir", t.TempDir()}, args...))
		if err == nil || !strings.Contains(err.Error(), "mutual TLS") {
			t.Errorf("%s without --cluster-tls-*: %v, want a refusal naming mutual TLS", name, err)
		}
		withTLS := append(args, "--cluster-tls-ca", "ca.crt", "--cluster-tls-cert", "m.crt", "--cluster-tls-key", "m.key")
		if _, err := serveFlags(append([]string{"--data-dir", t.TempDir()}, withTLS...)); err != nil {
			t.Errorf("%s with --cluster-tls-*: %v", name, err)
		}
	}
	if _, err := serveFlags([]string{"--data-dir", t.TempDir()}); err != nil {
		t.Errorf("a single node without --cluster-tls-*: %v, want it accepted (it makes its own)", err)
	}
}
