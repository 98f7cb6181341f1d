// Package persistence holds every SQL statement caregrid runs: the pgx pool,
// the embedded migrations, the activation fence, one store per aggregate, the
// transactional outbox and the audit store.
//
// The SQL is written for both CockroachDB (production) and PostgreSQL 15+
// (tests and the embedded default): INSERT ... ON CONFLICT, application or
// gen_random_uuid() keys, TIMESTAMPTZ, JSONB, BYTEA. Every transaction runs
// through crdbpgxv5.ExecuteTx (see tx.go) so that serialization retries are
// handled; transaction closures have no side effects outside the database.
//
// Writes that belong to a grain go through a Fence (fence.go): the write
// transaction first proves that the activation still owns its identity, so a
// stale activation can never overwrite the state of the live one.
//
// Ids travel as Go strings. An array of them is sent as $n::TEXT[]::UUID[]:
// pgx has no binary plan for []string as UUID[], so it formats an error for
// the whole slice before falling back to text, on every batch.
package persistence
