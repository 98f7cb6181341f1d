// Command caregrid is the one binary: `serve` runs a node (cluster member
// and HTTP edge), `migrate` applies the schema, `dev-token` mints
// development tokens, `audit verify` checks the audit hash chains and
// `bench` drives load at a running node. main only parses flags into a
// config and calls run; a signal cancels the context.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// Doctors' working hours are kept in IANA zones: carry the zone data so
	// a static binary in a bare container still knows them.
	_ "time/tzdata"
)

const usage = `usage: caregrid <command> [flags]

commands:
  serve       run a node: cluster member and HTTP edge
  migrate     apply the database migrations (DATABASE_URL)
  dev-token   mint a development access token (servers started with --dev-auth)
  dev-certs   make a development CA and member certificates for the cluster's mutual TLS
  audit       audit trail tools: 'audit verify' checks every shard's hash chain
  admin       accounts and clients: 'admin bootstrap', 'admin account create', 'admin client create'
  bench       load generator: 'bench read-patient|booking-hot|booking-spread|booking-sql-baseline --url URL'

'caregrid <command> -h' lists a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		err = serveCmd(ctx, args)
	case "migrate":
		err = migrateCmd(ctx, args)
	case "dev-token":
		err = devTokenCmd(args)
	case "dev-certs":
		err = devCertsCmd(args)
	case "audit":
		err = auditCmd(ctx, args)
	case "bench":
		err = benchCmd(ctx, args)
	case "admin":
		err = adminCmd(ctx, args)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "caregrid: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "caregrid:", err)
		os.Exit(1)
	}
}

// envOr is the value of an environment variable, or def.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
