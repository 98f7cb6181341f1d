package persistence

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
)

// insertOutbox records a domain event in the transaction that makes the
// change it describes, so the event exists exactly when the change does.
// The event type is the protobuf full name (caregrid.v1.PatientRegistered).
func insertOutbox(ctx context.Context, tx pgx.Tx, kind, id string, version int64, event proto.Message, payload []byte) error {
	_, err := tx.Exec(ctx, `INSERT INTO outbox (id, aggregate_kind, aggregate_id, aggregate_version, event_type, payload, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		uuid.New(), kind, id, version, string(proto.MessageName(event)), payload, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// OutboxEvent is one domain event not yet delivered (the relay deletes
// what it delivers).
type OutboxEvent struct {
	ID               string
	AggregateKind    string
	AggregateID      string
	AggregateVersion int64
	EventType        string
	Payload          []byte
}

// OutboxEvents returns the undelivered events of one aggregate in version
// order; tests without a relay use it to check that every change produced
// its event.
func (db *DB) OutboxEvents(ctx context.Context, kind, id string) ([]OutboxEvent, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id::TEXT, aggregate_kind, aggregate_id, aggregate_version, event_type, payload
		FROM outbox WHERE aggregate_kind = $1 AND aggregate_id = $2 ORDER BY aggregate_version`, kind, id)
	if err != nil {
		return nil, classify(err)
	}
	evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[OutboxEvent])
	return evs, classify(err)
}
