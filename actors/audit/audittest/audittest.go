// Package audittest opens audit chains for tests that run grains outside
// a node.
package audittest

import (
	"context"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/persistence"
)

// OpenChain opens an audit chain on an actor system of its own, stopped
// when the test ends. The grain kinds' dependencies are process-wide, so
// every member a test process configures records to the chain of the last
// member configured.
func OpenChain(t testing.TB, db *persistence.DB, member string) *audit.Chain {
	t.Helper()
	chain := audit.NewChain(audit.Deps{DB: db})
	system := actor.NewActorSystem()
	if err := chain.Open(context.Background(), system, member, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(system.Shutdown)
	return chain
}
