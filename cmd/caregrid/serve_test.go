package main

import (
	"io"
	"log/slog"
	"testing"

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
		got := "none"
		switch m := ic.Mailer.(type) {
		case identity.SMTPMailer:
			got = "smtp"
			if m.Addr != "mail.hospital.example:587" || m.From != "caregrid <no-reply@hospital.example>" {
				t.Errorf("%s: SMTP mailer %+v", name, m)
			}
		case identity.LogMailer:
			got = "log"
		}
		if got != tt.want || ic.Issuer != "http://127.0.0.1:8080/oidc" {
			t.Errorf("%s: mailer %s, issuer %s; want %s", name, got, ic.Issuer, tt.want)
		}
	}
}
