package persistence

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// InTx lets the external tests run a transaction the way every store does.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error { return db.inTx(ctx, fn) }

// CheckFence lets the external tests hold a fence inside a transaction.
var CheckFence = checkFence
