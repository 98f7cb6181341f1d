package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"

	crdbpgx "github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrUnavailable is returned when the database cannot be reached or fails a
// statement for a reason other than the data (connection loss, timeout,
// commit failure). The grain replies STORE_UNAVAILABLE; the caller may retry.
var ErrUnavailable = errors.New("database unavailable")

// DB is the pool every store shares.
type DB struct {
	Pool    *pgxpool.Pool
	reserve reserveBatcher
}

// Open connects to url (PostgreSQL or CockroachDB) and checks the connection.
func Open(ctx context.Context, url string, maxConns int32) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if Traced.Load() {
		// Each statement a span under the request's (statements only: no
		// values, no connection details).
		cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTrimSQLInSpanName(), otelpgx.WithDisableConnectionDetailsInAttributes())
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Traced makes the pools Open opens from then on trace their statements
// (set when tracing is on: internal/tracing).
var Traced atomic.Bool

// Close stops the reservation writer and releases every connection.
func (db *DB) Close() {
	db.reserve.once.Do(func() {}) // no writer may start after this
	db.reserve.stop.Do(func() {
		if db.reserve.quit != nil {
			close(db.reserve.quit)
		}
	})
	db.Pool.Close()
}

// Ping reports whether the database answers; /readyz uses it.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// inTx runs fn in one transaction through crdbpgxv5.ExecuteTx, which retries
// fn on serialization failures (SQLSTATE 40001). fn must have no effects
// outside the transaction, since it may run more than once.
func (db *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	conn := &pipelinedConn{pool: db.Pool}
	defer func() {
		if conn.tx != nil {
			conn.tx.release()
		}
	}()
	// A write's audit events ride in its context (WithAudit).
	err := crdbpgx.ExecuteTx(ctx, conn, pgx.TxOptions{}, withPendingAudit(ctx, fn))
	if err == nil && conn.tx != nil {
		err = conn.tx.commitErr
	}
	return err
}

// pipelinedConn hands crdbpgxv5 a pipelinedTx.
type pipelinedConn struct {
	pool *pgxpool.Pool
	tx   *pipelinedTx
}

func (c *pipelinedConn) Begin(ctx context.Context) (pgx.Tx, error) {
	return c.BeginTx(ctx, pgx.TxOptions{})
}

func (c *pipelinedConn) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	pc, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// CockroachDB announces itself; there RELEASE SAVEPOINT is the commit
	// and reports the retryable errors, so it must be a statement of its own.
	cockroach := pc.Conn().PgConn().ParameterStatus("crdb_version") != ""
	c.tx = &pipelinedTx{conn: pc, opts: opts, cockroach: cockroach}
	return c.tx, nil
}

// The statements crdb.ExecuteInTx wraps every transaction in.
const (
	savepointSQL  = "SAVEPOINT cockroach_restart"
	releaseSQL    = "RELEASE SAVEPOINT cockroach_restart"
	rollbackToSQL = "ROLLBACK TO SAVEPOINT cockroach_restart"
)

// pipelinedTx is the transaction ExecuteTx runs fn in. Under load every
// round trip waits for two busy processes to be scheduled, and a calendar's
// group commit spent five of them: BEGIN, SAVEPOINT, its statements,
// RELEASE, COMMIT. pipelinedTx sends BEGIN and the savepoint together with
// the first statements (pgx Batch.BeginTx), and on PostgreSQL, where RELEASE
// cannot fail on its own, RELEASE together with COMMIT: two round trips.
// Everything else is the real pgx transaction's.
//
// It also remembers its commit error: crdb.ExecuteInTx ignores the result of
// Commit because on CockroachDB RELEASE SAVEPOINT already committed; on
// PostgreSQL the COMMIT itself can fail, and a write we believe committed but
// did not would corrupt grain state.
type pipelinedTx struct {
	conn      *pgxpool.Conn
	opts      pgx.TxOptions
	cockroach bool
	savepoint bool   // ExecuteInTx asked for its savepoint; it goes with BEGIN
	releasing bool   // ExecuteInTx released it; on PostgreSQL that goes with COMMIT
	tx        pgx.Tx // nil until the first statement
	commitErr error
	released  bool
}

// sendWithBegin sends queued after BEGIN (and the savepoint) in one round
// trip; the results the caller sees are queued's.
func (t *pipelinedTx) sendWithBegin(ctx context.Context, queued []*pgx.QueuedQuery) pgx.BatchResults {
	b := &pgx.Batch{}
	b.BeginTx(t.opts)
	skip := 1
	if t.savepoint {
		b.Queue(savepointSQL)
		skip++
	}
	b.QueuedQueries = append(b.QueuedQueries, queued...)
	br := t.conn.SendBatch(ctx, b)
	t.tx = br.Tx()
	for range skip {
		if _, err := br.Exec(); err != nil {
			return &failedResults{BatchResults: br, err: err}
		}
	}
	return br
}

// started begins the transaction on its own (for a first Query).
func (t *pipelinedTx) started(ctx context.Context) (pgx.Tx, error) {
	if t.tx != nil {
		return t.tx, nil
	}
	if err := t.sendWithBegin(ctx, nil).Close(); err != nil {
		return nil, err
	}
	return t.tx, nil
}

func (t *pipelinedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	switch {
	case t.tx == nil && sql == savepointSQL:
		t.savepoint = true
		return pgconn.CommandTag{}, nil
	case t.tx == nil && (sql == releaseSQL || sql == rollbackToSQL):
		return pgconn.CommandTag{}, nil // nothing was sent: nothing to release or undo
	case t.tx == nil:
		br := t.sendWithBegin(ctx, []*pgx.QueuedQuery{{SQL: sql, Arguments: args}})
		tag, err := br.Exec()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return tag, err
	case sql == releaseSQL && !t.cockroach:
		t.releasing = true
		return pgconn.CommandTag{}, nil
	}
	return t.tx.Exec(ctx, sql, args...)
}

func (t *pipelinedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.tx == nil {
		return t.sendWithBegin(ctx, b.QueuedQueries)
	}
	return t.tx.SendBatch(ctx, b)
}

func (t *pipelinedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.started(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Query(ctx, sql, args...)
}

func (t *pipelinedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.started(ctx)
	if err != nil {
		return errRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

func (t *pipelinedTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	tx, err := t.started(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, table, cols, src)
}

func (t *pipelinedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	tx, err := t.started(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Prepare(ctx, name, sql)
}

func (t *pipelinedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.started(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

func (t *pipelinedTx) LargeObjects() pgx.LargeObjects {
	if t.tx == nil {
		return pgx.LargeObjects{}
	}
	return t.tx.LargeObjects()
}

func (t *pipelinedTx) Conn() *pgx.Conn { return t.conn.Conn() }

func (t *pipelinedTx) Commit(ctx context.Context) error {
	switch {
	case t.tx == nil:
		return nil // no statement ran
	case t.releasing:
		// RELEASE and COMMIT in one round trip (PostgreSQL only). pgx's
		// transaction object is left as it is: the connection is out of the
		// transaction, which is what the pool checks when it takes it back.
		var b pgx.Batch
		b.Queue(releaseSQL)
		b.Queue("COMMIT")
		t.commitErr = t.tx.SendBatch(ctx, &b).Close()
		return t.commitErr
	}
	t.commitErr = t.tx.Commit(ctx)
	return t.commitErr
}

func (t *pipelinedTx) Rollback(ctx context.Context) error {
	if t.tx == nil || t.conn.Conn().PgConn().TxStatus() == 'I' {
		return nil // never begun, or already ended by a pipelined COMMIT
	}
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		err = nil
	}
	return err
}

// release returns the connection to the pool; pgxpool closes it instead
// if a transaction is still open on it.
func (t *pipelinedTx) release() {
	if !t.released {
		t.released = true
		t.conn.Release()
	}
}

// failedResults is a batch whose BEGIN or savepoint failed: every result
// is that error.
type failedResults struct {
	pgx.BatchResults
	err error
}

func (r *failedResults) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, r.err }
func (r *failedResults) Query() (pgx.Rows, error)         { return nil, r.err }
func (r *failedResults) QueryRow() pgx.Row                { return errRow{r.err} }
func (r *failedResults) Close() error {
	_ = r.BatchResults.Close()
	return r.err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// classify turns driver errors that say nothing about the data into
// ErrUnavailable, keeping the cause for logs.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return err // the server answered: a data or SQL error, not availability
	}
	if errors.Is(err, ErrFenced) || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// isUniqueViolation reports whether err is a unique-constraint violation on
// the named constraint.
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// isForeignKeyViolation reports whether err is a foreign-key violation.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
