// Command caregrid-pharmacy is an example internal service: a pharmacy
// system that reads and dispenses prescriptions through caregrid's actor
// messages (package cluster/client), as its own process with its own
// certificate and OAuth client credentials.
//
//	caregrid admin client create --kind service --role service --name pharmacy   # prints CLIENT_ID and a secret
//	caregrid dev-certs --dir .data/certs --service CLIENT_ID                     # its certificate, from the cluster's CA
//	CAREGRID_CLIENT_SECRET=... caregrid-pharmacy --client-id CLIENT_ID \
//	    --members 127.0.0.1:7001 --tls-ca .data/certs/ca.crt \
//	    --tls-cert .data/certs/service-CLIENT_ID.crt --tls-key .data/certs/service-CLIENT_ID.key \
//	    get PRESCRIPTION_ID | dispense PRESCRIPTION_ID QUANTITY KEY | visits PATIENT_ID
//
// Each command prints the reply as JSON on stdout, or the refusal on stderr
// with exit status 3 (refused: permission, proof, not found, state) or 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster/client"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		var refused *actorcluster.GrainErrorResponse
		if errors.As(err, &refused) {
			fmt.Fprintf(os.Stderr, "refused: %s: %s\n", refused.Reason, refused.Message)
			os.Exit(3)
		}
		fmt.Fprintln(os.Stderr, "caregrid-pharmacy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("caregrid-pharmacy", flag.ContinueOnError)
	var cfg client.Config
	var members string
	fs.StringVar(&cfg.ClusterName, "cluster-name", "caregrid", "the cluster's name")
	fs.StringVar(&members, "members", "", "remoting addresses of the members (host:port,...)")
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address the members reach this service on")
	fs.StringVar(&cfg.TLS.CAFile, "tls-ca", "", "the cluster's CA certificate")
	fs.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "this service's certificate (for <client id>.service.caregrid.internal)")
	fs.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "its key")
	fs.StringVar(&cfg.TokenURL, "token-url", "http://127.0.0.1:8080/oidc/oauth/token", "the OpenID Provider's token endpoint")
	fs.StringVar(&cfg.ClientID, "client-id", "", "the service client's id")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "bound on one call, retries included")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.ClientSecret = os.Getenv("CAREGRID_CLIENT_SECRET")
	if members != "" {
		cfg.Members = strings.Split(members, ",")
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cmd := fs.Args()
	if len(cmd) == 0 {
		return errors.New("a command: get ID | dispense ID QUANTITY KEY | visits PATIENT_ID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	var reply proto.Message
	switch {
	case cmd[0] == "get" && len(cmd) == 2:
		reply, err = c.Prescription(ctx, cmd[1])
	case cmd[0] == "dispense" && len(cmd) == 4:
		reply, err = c.Dispense(ctx, cmd[1], cmd[2], cmd[3])
	case cmd[0] == "visits" && len(cmd) == 2:
		reply, err = c.Visits(ctx, cmd[1])
	default:
		return fmt.Errorf("unknown command %q", strings.Join(cmd, " "))
	}
	if err != nil {
		return err
	}
	out, err := protojson.Marshal(reply)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
