package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	conn := &commitCheckingConn{pool: db.Pool}
	err := crdbpgx.ExecuteTx(ctx, conn, pgx.TxOptions{}, fn)
	if err == nil && conn.tx != nil {
		err = conn.tx.commitErr
	}
	return err
}

// commitCheckingConn hands crdbpgxv5 a transaction that remembers its commit
// error. crdb.ExecuteInTx ignores the result of Commit because on CockroachDB
// RELEASE SAVEPOINT already committed; on PostgreSQL the COMMIT itself can
// fail, and a write we believe committed but did not would corrupt grain state.
type commitCheckingConn struct {
	pool *pgxpool.Pool
	tx   *commitCheckingTx
}

func (c *commitCheckingConn) Begin(ctx context.Context) (pgx.Tx, error) {
	return c.BeginTx(ctx, pgx.TxOptions{})
}

func (c *commitCheckingConn) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := c.pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.tx = &commitCheckingTx{Tx: tx}
	return c.tx, nil
}

type commitCheckingTx struct {
	pgx.Tx
	commitErr error
}

func (t *commitCheckingTx) Commit(ctx context.Context) error {
	t.commitErr = t.Tx.Commit(ctx)
	return t.commitErr
}

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
