package persistence

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditChain is one member incarnation's audit chain.
type AuditChain struct {
	Shard    int32
	Member   string
	Address  string
	OpenedAt time.Time
}

// OpenAuditChain opens a new chain for a member incarnation: the next
// shard number no chain or event has used, registered, and its fence
// claimed, in one transaction. Two members starting at once may pick the
// same number; the primary key refuses the second, which tries the next.
func (db *DB) OpenAuditChain(ctx context.Context, member, address string) (AuditChain, Fence, error) {
	for attempt := 0; ; attempt++ {
		var (
			c AuditChain
			f Fence
		)
		err := db.inTx(ctx, func(tx pgx.Tx) error {
			err := tx.QueryRow(ctx, `SELECT greatest(
				coalesce((SELECT max(shard) FROM audit_chains), -1),
				coalesce((SELECT max(shard) FROM audit_events), -1),
				coalesce((SELECT max(shard) FROM audit_pending), -1)) + 1`).Scan(&c.Shard)
			if err != nil {
				return err
			}
			c.Member, c.Address, c.OpenedAt = member, address, time.Now().UTC().Truncate(time.Microsecond)
			if _, err := tx.Exec(ctx, `INSERT INTO audit_chains (shard, member, address, opened_at) VALUES ($1, $2, $3, $4)`,
				c.Shard, c.Member, c.Address, c.OpenedAt); err != nil {
				return err
			}
			f, err = claim(ctx, tx, AuditKind, fmt.Sprintf("shard-%d", c.Shard), member)
			return err
		})
		if isUniqueViolation(err, "audit_chains_pkey") && attempt < 10 {
			continue
		}
		if err != nil {
			return AuditChain{}, Fence{}, classify(fmt.Errorf("open audit chain: %w", err))
		}
		return c, f, nil
	}
}

// ClaimAuditChain claims a chain's fence again (after a failed write its
// head must be read anew; the claim comes first, see Fence).
func (db *DB) ClaimAuditChain(ctx context.Context, shard int32, member string) (Fence, error) {
	return db.Claim(ctx, AuditKind, fmt.Sprintf("shard-%d", shard), member)
}

// AuditChains lists every chain, oldest first.
func (db *DB) AuditChains(ctx context.Context) ([]AuditChain, error) {
	rows, err := db.Pool.Query(ctx, `SELECT shard, member, address, opened_at FROM audit_chains ORDER BY shard`)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AuditChain])
	return out, classify(err)
}
