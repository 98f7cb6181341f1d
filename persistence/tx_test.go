package persistence_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestTransactionsAreAtomicRetriedAndChecked: the transaction every store
// writes through is one: a later failure undoes the first statement, a
// serialization failure retries from crdb's savepoint, a failed COMMIT is
// reported as a failure, and the connections go back to the pool.
func TestTransactionsAreAtomicRetriedAndChecked(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE tx_probe (k INT, CONSTRAINT tx_probe_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM tx_probe`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A failure after the first statement rolls the first one back too.
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tx_probe VALUES (1)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO tx_probe VALUES ('not a number')`)
		return err
	})
	if err == nil || count() != 0 {
		t.Fatalf("failed transaction = %v, rows %d; want an error and no rows", err, count())
	}

	// The same when the first statements go as a batch.
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(`INSERT INTO tx_probe VALUES (1)`)
		b.Queue(`INSERT INTO tx_probe VALUES (2)`)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
		return errors.New("changed my mind")
	})
	if err == nil || count() != 0 {
		t.Fatalf("abandoned batch transaction = %v, rows %d; want no rows", err, count())
	}

	// A serialization failure (40001) on the first attempt is retried from
	// the savepoint that went with BEGIN; the retry commits once.
	attempts := 0
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		attempts++
		if _, err := tx.Exec(ctx, `INSERT INTO tx_probe VALUES (3)`); err != nil {
			return err
		}
		if attempts == 1 {
			_, err := tx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'retry me' USING ERRCODE = '40001'; END $$`)
			return err
		}
		return nil
	})
	if err != nil || attempts != 2 || count() != 1 {
		t.Fatalf("retried transaction = %v after %d attempts, %d rows; want it committed once on the second", err, attempts, count())
	}

	// A COMMIT that fails (a deferred constraint) is an error, not a success.
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tx_probe VALUES (3)`)
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || count() != 1 {
		t.Fatalf("commit violating a deferred constraint = %v, rows %d; want 23505 and 1 row", err, count())
	}

	// A transaction that never ran a statement commits nothing and fails nothing.
	if err := db.InTx(ctx, func(pgx.Tx) error { return nil }); err != nil {
		t.Fatalf("empty transaction = %v", err)
	}
	// Every connection went back to the pool.
	if n := db.Pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still acquired", n)
	}
}

// BenchmarkSmallTransaction is one small write transaction (a two-statement
// batch) through the path every store uses: mostly round trips.
func BenchmarkSmallTransaction(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE tx_bench (k BIGINT PRIMARY KEY, v INT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	var k int64
	for b.Loop() {
		k++
		err := db.InTx(ctx, func(tx pgx.Tx) error {
			var q pgx.Batch
			q.Queue(`INSERT INTO tx_bench VALUES ($1, 1)`, k)
			q.Queue(`UPDATE tx_bench SET v = v + 1 WHERE k = $1`, k)
			return tx.SendBatch(ctx, &q).Close()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestClaimWaitsForAFencedWrite: a new activation's claim waits while a
// write that passed the old epoch's fence is open, and takes the grain
// once it commits; the old epoch then fails its next fence.
func TestClaimWaitsForAFencedWrite(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	old, err := db.Claim(ctx, "Probe", "p1", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	locked, release, written := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		written <- db.InTx(ctx, func(tx pgx.Tx) error {
			if err := persistence.CheckFence(ctx, tx, old); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	claimed := make(chan persistence.Fence, 1)
	go func() {
		f, err := db.Claim(ctx, "Probe", "p1", "node-b")
		if err != nil {
			t.Error(err)
		}
		claimed <- f
	}()
	// The claim is seen waiting on the row lock before the write is let go.
	await.Until(t, "the claim to wait for the fenced write's lock", 30*time.Second, func() bool {
		select {
		case <-claimed:
			t.Fatal("the claim went through while a write holding the old fence was open")
		default:
		}
		var waiting int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO grain_owner%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting == 1
	})
	close(release)
	if err := <-written; err != nil {
		t.Fatalf("the fenced write = %v", err)
	}
	if f := <-claimed; f.Epoch != old.Epoch+1 {
		t.Fatalf("new epoch = %d, want %d", f.Epoch, old.Epoch+1)
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error { return persistence.CheckFence(ctx, tx, old) })
	if !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("old fence after the claim = %v, want ErrFenced", err)
	}
}
