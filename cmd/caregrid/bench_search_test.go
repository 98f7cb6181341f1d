package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/caregrid/caregrid/search"
	"github.com/jackc/pgx/v5"
)

// TestSeedIndexesAsTheRelayDoes: the benchmark's seed writes the search
// read model's keys (words and pairs of words) straight through COPY; they
// must be the keys the relay's upsert writes, or the benchmark measures
// another index than the one in use.
func TestSeedIndexesAsTheRelayDoes(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []*messages.PatientRecord
	for range 200 {
		recs = append(recs, seedPatient(rng))
	}
	recs[0].GivenName, recs[0].FamilyName = "Ana Maria Elena", "Popescu-Rusu Ciobanu" // more words than two
	if err := copyPatients(ctx, db, recs); err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		rows, err := db.Pool.Query(ctx, `SELECT word || '/' || patient_id FROM patient_words ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	seeded := keys()
	if _, err := db.Pool.Exec(ctx, `DELETE FROM patient_words`); err != nil {
		t.Fatal(err)
	}
	views := make([]persistence.PatientView, len(recs))
	for i, r := range recs {
		views[i] = search.View(r)
		views[i].Version++ // a newer version, so that the upsert writes
	}
	if err := db.PutPatientViews(ctx, views); err != nil {
		t.Fatal(err)
	}
	if relayed := keys(); !slices.Equal(seeded, relayed) || len(seeded) < 3*len(recs) {
		t.Fatalf("the seed wrote %d keys, the relay's upsert %d; they differ", len(seeded), len(relayed))
	}
}
