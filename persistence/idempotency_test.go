package persistence_test

import (
	"context"
	"sync"
	"testing"

	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
)

// An Idempotency-Key names one id, whoever asks first and however many
// ask at once; another caller's same key, or another kind, is another id.
func TestAnIdempotencyKeyNamesTheIDItsFirstRequestChose(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	ids := make([]string, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := db.IDForKey(ctx, "patient", "desk-1", "reg-1", uuid.NewString())
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || uuid.Validate(id) != nil {
			t.Fatalf("16 concurrent first requests got %v; want one id", ids)
		}
	}
	for name, args := range map[string][2]string{"another caller": {"patient", "desk-2"}, "another kind": {"appointment", "desk-1"}} {
		candidate := uuid.NewString()
		if id, err := db.IDForKey(ctx, args[0], args[1], "reg-1", candidate); err != nil || id != candidate {
			t.Errorf("%s: %s, %v; want its own candidate %s", name, id, err, candidate)
		}
	}
}
