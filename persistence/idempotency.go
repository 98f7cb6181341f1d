package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// IDForKey returns the id a caller's Idempotency-Key stands for: the id
// its first request chose, or candidate when this is the first. Ids are
// random (nobody can compute another's), and a replay still reaches the
// grain that answered first.
func (db *DB) IDForKey(ctx context.Context, kind, subject, key, candidate string) (string, error) {
	// The insert and the read are one statement; when a concurrent first
	// request commits between this statement's snapshot and its insert,
	// neither part returns a row, and the next statement (a new snapshot
	// under READ COMMITTED) sees it.
	for range 3 {
		var id string
		err := db.Pool.QueryRow(ctx, `WITH ins AS (
				INSERT INTO idempotency_keys (kind, subject, key, id, created_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (kind, subject, key) DO NOTHING RETURNING id)
			SELECT id::TEXT FROM ins
			UNION ALL SELECT id::TEXT FROM idempotency_keys WHERE kind = $1 AND subject = $2 AND key = $3
			LIMIT 1`, kind, subject, key, candidate, time.Now().UTC()).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", classify(fmt.Errorf("idempotency key: %w", err))
		}
		return id, nil
	}
	return "", fmt.Errorf("idempotency key %s/%s: no row after 3 tries", kind, key)
}
