package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// StoredDocument is a documents row: the metadata, where the sealed content
// is, and the document's key wrapped by the patient's data key.
type StoredDocument struct {
	Document   *messages.Document
	BlobKey    string
	KeyWrapped []byte
}

// RecordDocument inserts a document, fenced by the patient grain's claim.
func (db *DB) RecordDocument(ctx context.Context, f Fence, d StoredDocument) error {
	m := d.Document
	return classify(db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO documents (id, patient_id, title, content_type, size, sha256, blob_key, key_wrapped,
			uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			m.Id, m.PatientId, m.Title, m.ContentType, m.Size, m.Sha256, d.BlobKey, d.KeyWrapped, m.UploadedBy, m.CreatedAt.AsTime())
		return err
	}))
}

const documentColumns = `id::text, patient_id::text, title, content_type, size, sha256, blob_key, key_wrapped, uploaded_by, created_at`

func scanDocument(r pgx.Row) (StoredDocument, error) {
	var (
		d  = StoredDocument{Document: &messages.Document{}}
		m  = d.Document
		at time.Time
	)
	err := r.Scan(&m.Id, &m.PatientId, &m.Title, &m.ContentType, &m.Size, &m.Sha256, &d.BlobKey, &d.KeyWrapped, &m.UploadedBy, &at)
	m.CreatedAt = timestamppb.New(at)
	return d, err
}

// Document reads one of a patient's documents, or ErrNotFound.
func (db *DB) Document(ctx context.Context, patientID, id string) (StoredDocument, error) {
	d, err := scanDocument(db.Pool.QueryRow(ctx, `SELECT `+documentColumns+` FROM documents WHERE patient_id = $1 AND id = $2`, patientID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredDocument{}, ErrNotFound
	}
	return d, classify(err)
}

// Documents lists a patient's documents newest first, after the
// (created_at, id) cursor when before is not zero, at most limit.
func (db *DB) Documents(ctx context.Context, patientID string, before time.Time, beforeID string, limit int) ([]StoredDocument, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+documentColumns+` FROM documents WHERE patient_id = $1
		AND ($2::timestamptz = 'epoch' OR (created_at, id) < ($2, $3::uuid)) ORDER BY created_at DESC, id DESC LIMIT $4`,
		patientID, before, nullUUID(beforeID), limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredDocument, error) { return scanDocument(r) })
	return out, classify(err)
}
