package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// AuditKey is an audit signing key; Private is its private half sealed
// with the master key (empty when only the public half was read).
type AuditKey struct {
	ID                   string
	Public, Private      []byte
	CreatedAt, RetiredAt time.Time
}

// Checkpoint is a signed chain head of one audit shard.
type Checkpoint struct {
	Shard     int32
	Seq       int64
	Hash      []byte
	SignedAt  time.Time
	KeyID     string
	Signature []byte
}

// ActiveAuditKey returns the key that signs now; ErrNotFound when none.
func (db *DB) ActiveAuditKey(ctx context.Context) (AuditKey, error) {
	var k AuditKey
	err := db.Pool.QueryRow(ctx, `SELECT id, public_key, private_sealed, created_at FROM audit_signing_keys WHERE retired_at IS NULL`).
		Scan(&k.ID, &k.Public, &k.Private, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return AuditKey{}, ErrNotFound
	}
	return k, classify(err)
}

// AddAuditKey makes k the active key. With retire, the active one is
// retired first (a rotation); without, ErrExists when a key is active
// already (two members making the first key at once: one wins).
func (db *DB) AddAuditKey(ctx context.Context, k AuditKey, retire bool) error {
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if retire {
			if _, err := tx.Exec(ctx, `UPDATE audit_signing_keys SET retired_at = $1 WHERE retired_at IS NULL`, k.CreatedAt); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO audit_signing_keys (id, public_key, private_sealed, created_at) VALUES ($1, $2, $3, $4)`,
			k.ID, k.Public, k.Private, k.CreatedAt)
		return err
	})
	if isUniqueViolation(err, "audit_signing_keys_active") || isUniqueViolation(err, "audit_signing_keys_pkey") {
		return ErrExists
	}
	return classify(err)
}

// AuditKeys returns every signing key's public half, oldest first.
func (db *DB) AuditKeys(ctx context.Context) ([]AuditKey, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, public_key, created_at, retired_at FROM audit_signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditKey, error) {
		var (
			k       AuditKey
			retired pgtype.Timestamptz
		)
		err := r.Scan(&k.ID, &k.Public, &k.CreatedAt, &retired)
		k.RetiredAt = retired.Time
		return k, err
	})
	return out, classify(err)
}

// AddCheckpoint stores a signed chain head; one for the same shard and
// seq already stored is kept.
func (db *DB) AddCheckpoint(ctx context.Context, c Checkpoint) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO audit_checkpoints (shard, seq, hash, signed_at, key_id, signature)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, c.Shard, c.Seq, c.Hash, c.SignedAt, c.KeyID, c.Signature)
	return classify(err)
}

// Checkpoints returns a shard's checkpoints in seq order.
func (db *DB) Checkpoints(ctx context.Context, shard int32) ([]Checkpoint, error) {
	rows, err := db.Pool.Query(ctx, `SELECT shard, seq, hash, signed_at, key_id, signature FROM audit_checkpoints
		WHERE shard = $1 ORDER BY seq`, shard)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Checkpoint])
	return out, classify(err)
}

// LastCheckpointSeq is the seq of a shard's latest checkpoint (0: none).
func (db *DB) LastCheckpointSeq(ctx context.Context, shard int32) (int64, error) {
	var seq int64
	err := db.Pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM audit_checkpoints WHERE shard = $1`, shard).Scan(&seq)
	return seq, classify(err)
}

// CheckpointShards are the shards with a checkpoint (a shard whose rows
// were all deleted still has its checkpoints).
func (db *DB) CheckpointShards(ctx context.Context) ([]int32, error) {
	rows, err := db.Pool.Query(ctx, `SELECT DISTINCT shard FROM audit_checkpoints ORDER BY shard`)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	return out, classify(err)
}
