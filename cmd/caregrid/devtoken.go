//go:build devauth

package main

// Development tokens: compiled only with -tags devauth (make run and the
// bench scripts build so); nodevauth.go stands in otherwise.

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
)

func devTokenCmd(args []string) error {
	fs := flag.NewFlagSet("dev-token", flag.ContinueOnError)
	role := fs.String("role", "", "admin, receptionist, doctor or patient")
	sub := fs.String("sub", "", "subject: an account id, or the patient id for --role patient")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime")
	keyFile := fs.String("dev-auth-key-file", envOr("CAREGRID_DEV_AUTH_KEY_FILE", filepath.Join(envOr("CAREGRID_DATA_DIR", ".data"), "dev-auth.key")),
		"the key the server was started with (env CAREGRID_DEV_AUTH_KEY_FILE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, ok := messages.ParseRole(*role)
	if !ok || r == messages.Role_ROLE_SERVICE {
		return errors.New("dev-token: --role must be admin, receptionist, doctor or patient")
	}
	if *sub == "" {
		return errors.New("dev-token: --sub is required")
	}
	key, err := edge.LoadDevKey(*keyFile, false)
	if err != nil {
		return fmt.Errorf("dev-token: %w (start 'caregrid serve --dev-auth' once to create it)", err)
	}
	tok, err := edge.MintDevToken(key, r, *sub, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// devAuthenticator accepts development tokens signed with the key in path
// (created if missing).
func devAuthenticator(path string) (edge.Authenticator, error) {
	key, err := edge.LoadDevKey(path, true)
	if err != nil {
		return nil, err
	}
	return edge.NewCachingAuthenticator(edge.DevAuthenticator{Key: key}, 10000, time.Minute), nil
}
