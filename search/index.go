package search

import (
	"context"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// indexBatch is how many patients one write of the read model takes.
const indexBatch = 1000

// Reindex rewrites the read model from the patients table, in id order
// (after Fold changed, or to repair it), calling done with the count so
// far after each batch. Concurrent relay writes are safe: a view is
// written only over one of the same or an older version.
func Reindex(ctx context.Context, db *persistence.DB, done func(int)) (int, error) {
	return index(ctx, db, db.PatientsAfter, done)
}

// Backfill indexes the patients the read model lacks: those registered
// before it existed, on a database upgraded past migration 0016. Every
// member runs it at start; when the read model is whole it costs one walk
// of the patients' ids, and two members doing it at once write the same
// rows.
func Backfill(ctx context.Context, db *persistence.DB, done func(int)) (int, error) {
	return index(ctx, db, db.PatientsMissingFromSearch, done)
}

func index(ctx context.Context, db *persistence.DB, next func(context.Context, string, int) ([]*messages.PatientRecord, error), done func(int)) (int, error) {
	n, after := 0, ""
	for {
		recs, err := next(ctx, after, indexBatch)
		if err != nil || len(recs) == 0 {
			return n, err
		}
		views := make([]persistence.PatientView, len(recs))
		for i, rec := range recs {
			views[i] = View(rec)
		}
		if err := db.PutPatientViews(ctx, views); err != nil {
			return n, err
		}
		n, after = n+len(recs), recs[len(recs)-1].Id
		if done != nil {
			done(n)
		}
	}
}
