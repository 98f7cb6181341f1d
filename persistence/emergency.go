package persistence

import (
	"context"
	"errors"
	"time"

	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"
)

// EmergencyAccess is one break-the-glass grant and its review. Reason is
// plain only as the grain hands it in and once opened (OpenEmergencyReason);
// the row keeps it sealed (ReasonSealed).
type EmergencyAccess struct {
	ID, PatientID, DoctorID, Reason string
	ReasonSealed                    []byte
	GrantedAt, ExpiresAt            time.Time
	// Review is pending, approved or flagged.
	Review, ReviewedBy, ReviewNote string
	ReviewedAt                     time.Time
}

// Review outcomes.
const (
	ReviewPending  = "pending"
	ReviewApproved = "approved"
	ReviewFlagged  = "flagged"
)

// EmergencyReasonAAD binds a sealed emergency reason to its grant.
func EmergencyReasonAAD(id string) string { return "emergency/" + id + "/reason" }

// GrantEmergencyAccess records a grant through the patient grain's fence,
// its reason sealed with k, the patient's data key, and the event that
// tells the patient (EmergencyAccessGranted, for the notifications; version
// is the patient's, which the grant leaves as it is);
// ErrNoDoctor when the doctor has no record.
func (db *DB) GrantEmergencyAccess(ctx context.Context, f Fence, k *seal.Key, e EmergencyAccess, version int64, event proto.Message) error {
	if k == nil {
		return errors.New("no data key for the emergency access")
	}
	sealed := k.Seal([]byte(e.Reason), EmergencyReasonAAD(e.ID))
	payload, err := proto.Marshal(event)
	if err != nil {
		return err
	}
	err = db.fenced(ctx, f, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO emergency_access (id, patient_id, doctor_id, reason, reason_sealed, granted_at, expires_at)
			VALUES ($1, $2, $3, '', $4, $5, $6)`, e.ID, e.PatientID, e.DoctorID, sealed, e.GrantedAt, e.ExpiresAt); err != nil {
			return err
		}
		return insertOutbox(ctx, tx, f.Kind, f.ID, version, event, payload)
	})
	if isForeignKeyViolation(err) {
		return ErrNoDoctor
	}
	return classify(err)
}

const emergencyColumns = `id::TEXT, patient_id::TEXT, doctor_id::TEXT, reason, reason_sealed, granted_at, expires_at, review, reviewed_by, review_note, reviewed_at`

func scanEmergency(r pgx.CollectableRow) (EmergencyAccess, error) {
	var (
		e  EmergencyAccess
		at pgtype.Timestamptz
	)
	err := r.Scan(&e.ID, &e.PatientID, &e.DoctorID, &e.Reason, &e.ReasonSealed, &e.GrantedAt, &e.ExpiresAt, &e.Review, &e.ReviewedBy, &e.ReviewNote, &at)
	e.ReviewedAt = at.Time
	return e, err
}

// EmergencyReviews lists grants in a review state ("" any), oldest first,
// after the grant afterID was made (keyset: granted_at, id).
func (db *DB) EmergencyReviews(ctx context.Context, review string, after time.Time, afterID string, limit int) ([]EmergencyAccess, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+emergencyColumns+` FROM emergency_access
		WHERE ($1 = '' OR review = $1) AND (granted_at, id) > ($2, $3::UUID)
		ORDER BY granted_at, id LIMIT $4`, review, after, afterID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanEmergency)
	return out, classify(err)
}

// ReviewEmergencyAccess records a privacy officer's decision on a pending
// grant, with the audit event audited makes of the grant as reviewed in
// the same transaction; ErrNotFound when there is no such grant,
// ErrReviewed when it was reviewed already. It returns the grant as
// reviewed.
func (db *DB) ReviewEmergencyAccess(ctx context.Context, id, decision, by, note string, at time.Time, audited func(EmergencyAccess) PendingAudit) (EmergencyAccess, error) {
	var e EmergencyAccess
	err := db.writeAudited(ctx, func(tx pgx.Tx) (*PendingAudit, error) {
		rows, err := tx.Query(ctx, `UPDATE emergency_access SET review = $2, reviewed_by = $3, review_note = $4, reviewed_at = $5
			WHERE id = $1 AND review = 'pending' RETURNING `+emergencyColumns, id, decision, by, note, at)
		if err != nil {
			return nil, err
		}
		if e, err = pgx.CollectExactlyOneRow(rows, scanEmergency); err != nil {
			return nil, err
		}
		pa := audited(e)
		return &pa, nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM emergency_access WHERE id = $1)`, id).Scan(&exists); err != nil {
			return EmergencyAccess{}, classify(err)
		}
		if exists {
			return EmergencyAccess{}, ErrReviewed
		}
		return EmergencyAccess{}, ErrNotFound
	}
	return e, classify(err)
}

// ErrReviewed is returned for a review of a grant that has one already.
var ErrReviewed = errors.New("reviewed already")

// OpenEmergencyReason is a grant's reason, opened with k, the patient's
// data key (a grant from before reasons were sealed has it plain).
func OpenEmergencyReason(k *seal.Key, e EmergencyAccess) (string, error) {
	if e.ReasonSealed == nil {
		return e.Reason, nil
	}
	if k == nil {
		return "", errors.New("no data key for the emergency access")
	}
	b, err := k.Open(e.ReasonSealed, EmergencyReasonAAD(e.ID))
	return string(b), err
}

// OpenEmergencyReasons opens the reasons of es in place, each with its
// patient's data key (from master).
func (db *DB) OpenEmergencyReasons(ctx context.Context, master *seal.Key, es []EmergencyAccess) error {
	keys := map[string]*seal.Key{}
	for i, e := range es {
		if e.ReasonSealed == nil {
			continue
		}
		k, ok := keys[e.PatientID]
		if !ok {
			var err error
			if k, err = db.DataKey(ctx, master, e.PatientID); err != nil {
				return err
			}
			keys[e.PatientID] = k
		}
		r, err := OpenEmergencyReason(k, e)
		if err != nil {
			return err
		}
		es[i].Reason = r
	}
	return nil
}

// EmergencyAccessByID is one grant, or ErrNotFound.
func (db *DB) EmergencyAccessByID(ctx context.Context, id string) (EmergencyAccess, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+emergencyColumns+` FROM emergency_access WHERE id = $1`, id)
	if err != nil {
		return EmergencyAccess{}, classify(err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEmergency)
	if errors.Is(err, pgx.ErrNoRows) {
		return EmergencyAccess{}, ErrNotFound
	}
	return e, classify(err)
}
