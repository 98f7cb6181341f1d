//go:build !devauth

package main

import (
	"errors"

	"github.com/caregrid/caregrid/edge"
)

// A production build has no development tokens: --dev-auth and dev-token
// fail with a message that says how to get them.
var errNoDevAuth = errors.New("this binary has no development tokens: build it with -tags devauth (make run does), or sign in through the OpenID Provider")

func devAuthenticator(string) (edge.Authenticator, error) { return nil, errNoDevAuth }

func devTokenCmd([]string) error { return errNoDevAuth }
