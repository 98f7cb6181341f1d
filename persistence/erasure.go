package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Erasure states (erasure_requests.state).
const (
	ErasurePending  = "pending"
	ErasureApproved = "approved"
	ErasureRefused  = "refused"
	ErasureErased   = "erased"
)

// What keeps an approved erasure waiting (Erasure.BlockedBy).
const (
	BlockedByRetention = "retention"
	BlockedByLegalHold = "legal-hold"
	BlockedByUpcoming  = "upcoming-appointments"
)

var (
	// ErrLegalHold is returned by ErasePatient while a legal hold stands.
	ErrLegalHold = errors.New("a legal hold stands")
	// ErrUpcoming is returned by ErasePatient while the patient has
	// appointments to come.
	ErrUpcoming = errors.New("the patient has appointments to come")
	// ErrWrongState is an erasure that is not in the state the change needs.
	ErrWrongState = errors.New("not in the state the change needs")
)

// Erasure is one erasure request (erasure_requests).
type Erasure struct {
	ID, PatientID, State, RequestedBy string
	RequestedAt                       time.Time
	ReviewedBy, ReviewNote, BlockedBy string
	ReviewedAt, RetainUntil, ErasedAt time.Time
	Proof                             []byte // JSON, set once erased
	BlobsLeft                         []string
}

const erasureColumns = `id::TEXT, patient_id::TEXT, state, requested_by, requested_at, reviewed_by, reviewed_at, review_note,
	blocked_by, retain_until, erased_at, coalesce(proof::TEXT, ''), blobs_left`

func scanErasure(r pgx.CollectableRow) (Erasure, error) {
	var (
		e                        Erasure
		reviewed, retain, erased pgtype.Timestamptz
		proof                    string
	)
	err := r.Scan(&e.ID, &e.PatientID, &e.State, &e.RequestedBy, &e.RequestedAt, &e.ReviewedBy, &reviewed, &e.ReviewNote,
		&e.BlockedBy, &retain, &erased, &proof, &e.BlobsLeft)
	e.ReviewedAt, e.RetainUntil, e.ErasedAt = reviewed.Time, retain.Time, erased.Time
	if proof != "" {
		e.Proof = []byte(proof)
	}
	return e, err
}

func (db *DB) oneErasure(ctx context.Context, q string, args ...any) (Erasure, error) {
	rows, err := db.Pool.Query(ctx, q, args...)
	if err != nil {
		return Erasure{}, classify(err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanErasure)
	if errors.Is(err, pgx.ErrNoRows) {
		return Erasure{}, ErrNotFound
	}
	return e, classify(err)
}

// RequestErasure files a pending erasure request through the patient
// grain's fence. A patient with an open request (pending or approved) gets
// that one back instead, with ErrExists.
func (db *DB) RequestErasure(ctx context.Context, f Fence, e Erasure) (Erasure, error) {
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO erasure_requests (id, patient_id, state, requested_by, requested_at)
			VALUES ($1, $2, 'pending', $3, $4)`, e.ID, e.PatientID, e.RequestedBy, e.RequestedAt)
		return err
	})
	if isUniqueViolation(err, "erasure_requests_open") {
		open, lerr := db.LatestErasure(ctx, e.PatientID)
		if lerr != nil {
			return Erasure{}, lerr
		}
		return open, ErrExists
	}
	if err != nil {
		return Erasure{}, classify(err)
	}
	return db.oneErasure(ctx, `SELECT `+erasureColumns+` FROM erasure_requests WHERE id = $1`, e.ID)
}

// LatestErasure is a patient's newest erasure request, or ErrNotFound.
func (db *DB) LatestErasure(ctx context.Context, patientID string) (Erasure, error) {
	return db.oneErasure(ctx, `SELECT `+erasureColumns+` FROM erasure_requests WHERE patient_id = $1
		ORDER BY requested_at DESC, id DESC LIMIT 1`, patientID)
}

// GetErasure is one erasure request, or ErrNotFound.
func (db *DB) GetErasure(ctx context.Context, id string) (Erasure, error) {
	return db.oneErasure(ctx, `SELECT `+erasureColumns+` FROM erasure_requests WHERE id = $1`, id)
}

// ErasureRequests lists erasure requests in a state ("" any), oldest
// first, after the request afterID was made (keyset: requested_at, id).
func (db *DB) ErasureRequests(ctx context.Context, state string, after time.Time, afterID string, limit int) ([]Erasure, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+erasureColumns+` FROM erasure_requests
		WHERE ($1 = '' OR state = $1) AND (requested_at, id) > ($2, $3::UUID)
		ORDER BY requested_at, id LIMIT $4`, state, after, nullUUID(afterID), limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanErasure)
	return out, classify(err)
}

// ReviewErasure records a privacy officer's decision (ErasureApproved or
// ErasureRefused) on a pending request; ErrNotFound when there is none,
// ErrReviewed when it was reviewed already.
// The audit event audited makes of the request as reviewed is written in
// the same transaction.
func (db *DB) ReviewErasure(ctx context.Context, id, decision, by, note string, at time.Time, audited func(Erasure) PendingAudit) (Erasure, error) {
	var e Erasure
	err := db.writeAudited(ctx, func(tx pgx.Tx) (*PendingAudit, error) {
		rows, err := tx.Query(ctx, `UPDATE erasure_requests SET state = $2, reviewed_by = $3, review_note = $4, reviewed_at = $5
			WHERE id = $1 AND state = 'pending' RETURNING `+erasureColumns, id, decision, by, note, at)
		if err != nil {
			return nil, err
		}
		if e, err = pgx.CollectExactlyOneRow(rows, scanErasure); err != nil {
			return nil, err
		}
		pa := audited(e)
		return &pa, nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		if _, gerr := db.GetErasure(ctx, id); gerr == nil {
			return Erasure{}, ErrReviewed
		}
		return Erasure{}, ErrNotFound
	}
	return e, classify(err)
}

// DueErasures lists approved erasures whose retention has ended (or was
// never computed), oldest first: the retention sweep's work.
func (db *DB) DueErasures(ctx context.Context, now time.Time, limit int) ([]Erasure, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+erasureColumns+` FROM erasure_requests
		WHERE state = 'approved' AND (retain_until IS NULL OR retain_until <= $1)
		ORDER BY requested_at, id LIMIT $2`, now, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanErasure)
	return out, classify(err)
}

// BlockErasure records why an approved erasure waits, and until when when
// it is retention.
func (db *DB) BlockErasure(ctx context.Context, id, blockedBy string, retainUntil time.Time) error {
	var until *time.Time
	if !retainUntil.IsZero() {
		until = &retainUntil
	}
	_, err := db.Pool.Exec(ctx, `UPDATE erasure_requests SET blocked_by = $2, retain_until = $3 WHERE id = $1 AND state = 'approved'`,
		id, blockedBy, until)
	return classify(err)
}

// ErasuresWithBlobsLeft lists erased patients whose documents' blobs are
// still to delete.
func (db *DB) ErasuresWithBlobsLeft(ctx context.Context, limit int) ([]Erasure, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+erasureColumns+` FROM erasure_requests
		WHERE state = 'erased' AND cardinality(blobs_left) > 0 ORDER BY erased_at LIMIT $1`, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanErasure)
	return out, classify(err)
}

// BlobsDeleted strikes deleted blobs from an erasure's list.
func (db *DB) BlobsDeleted(ctx context.Context, id string, keys []string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE erasure_requests SET blobs_left = ARRAY(
		SELECT k FROM unnest(blobs_left) AS k WHERE NOT k = ANY($2::TEXT[])) WHERE id = $1`, id, keys)
	return classify(err)
}

// ErasureProof is what an erasure destroyed: ids and counts, no personal
// data. DataKeySHA256 identifies the shredded key (a hash of its wrapped
// form) so that a backup's copy can be matched and destroyed too.
type ErasureProof struct {
	ErasureID     string           `json:"erasure_id"`
	PatientID     string           `json:"patient_id"`
	ErasedAt      time.Time        `json:"erased_at"`
	DataKeySHA256 string           `json:"data_key_sha256"`
	Deleted       map[string]int64 `json:"deleted"`
	Blobs         int              `json:"blobs"`
	// AuditRowsKept are the patient's access-log rows, kept (ids only) so
	// that the chain stays whole and verifiable.
	AuditRowsKept int64 `json:"audit_rows_kept"`
}

// erasedTables are what ErasePatient counts before the patient row's
// delete cascades to them; appointments are the calendars', kept with
// their reason blanked.
var erasedTables = []string{"visits", "diagnoses", "vaccinations", "patient_clinical_history", "prescriptions", "documents",
	"care_team", "patient_restrictions", "emergency_access", "appointments", "patient_reservations", "notifications", "notification_preferences"}

// ErasePatient carries out an approved erasure through the patient grain's
// fence, in one transaction: the data key is destroyed (crypto-shredding:
// every sealed value and document is unreadable from then on, in backups
// too once their copy of patient_keys is gone), the patient row and every
// row that hangs off it are deleted, appointment reasons blanked, the
// search projection and the outbox's events about the patient purged, the
// patient's account deleted, and the proof recorded. The audit trail is
// left whole: it holds ids only. It returns the documents' blob keys for
// the caller to delete. ErrLegalHold, ErrUpcoming and ErrWrongState say why
// nothing was done.
func (db *DB) ErasePatient(ctx context.Context, f Fence, erasureID, patientID string, now time.Time) (ErasureProof, []string, error) {
	return db.erasePatient(ctx, f, erasureID, patientID, now, true)
}

// erasePatient is ErasePatient; with honour false the legal hold and the
// appointments to come are not asked about (an erasure carried out
// already, applied again to a restored backup).
func (db *DB) erasePatient(ctx context.Context, f Fence, erasureID, patientID string, now time.Time, honour bool) (ErasureProof, []string, error) {
	var (
		proof ErasureProof
		blobs []string
	)
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		proof = ErasureProof{ErasureID: erasureID, PatientID: patientID, ErasedAt: now, Deleted: map[string]int64{}}
		var held, upcoming bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM legal_holds WHERE patient_id = $1),
			EXISTS (SELECT 1 FROM appointments WHERE patient_id = $1 AND end_at > $2
				AND (status IN ('booked', 'checked_in') OR status = 'held' AND hold_expires_at > $2))`,
			patientID, now).Scan(&held, &upcoming); err != nil {
			return err
		}
		switch {
		case held && honour:
			return ErrLegalHold
		case upcoming && honour:
			return ErrUpcoming
		}
		for _, t := range erasedTables {
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+t+` WHERE patient_id = $1`, patientID).Scan(&n); err != nil {
				return err
			}
			proof.Deleted[t] = n
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT encode(sha256(wrapped), 'hex') FROM patient_keys WHERE patient_id = $1::UUID), ''),
			(SELECT count(*) FROM audit_events WHERE patient_id = $1::UUID::TEXT)`, patientID).Scan(&proof.DataKeySHA256, &proof.AuditRowsKept); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT blob_key FROM documents WHERE patient_id = $1
			UNION ALL SELECT blob_key FROM patient_exports WHERE patient_id = $1 AND blob_key IS NOT NULL`, patientID)
		if err != nil {
			return err
		}
		if blobs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		proof.Blobs = len(blobs)
		for _, q := range []string{
			`DELETE FROM outbox WHERE (aggregate_kind = 'Patient' AND aggregate_id = $1::UUID::TEXT)
				OR (aggregate_kind = 'Prescription' AND aggregate_id IN (SELECT id::TEXT FROM prescriptions WHERE patient_id = $1::UUID))`,
			`DELETE FROM patient_words WHERE patient_id = $1`,
			`DELETE FROM patient_search WHERE patient_id = $1`,
			`DELETE FROM patient_reservations WHERE patient_id = $1`,
			`UPDATE appointments SET reason = '' WHERE patient_id = $1 AND reason <> ''`,
			`DELETE FROM accounts WHERE id = $1 AND role = 'patient'`,
			`DELETE FROM push_subscriptions WHERE subject = $1::UUID::TEXT`,
			// The key first, by name: the cascade below would take it too,
			// but the shredding is the point and should read so.
			`DELETE FROM patient_keys WHERE patient_id = $1`,
			`DELETE FROM patients WHERE id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, patientID); err != nil {
				return err
			}
		}
		proofJSON, err := json.Marshal(proof)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE erasure_requests SET state = 'erased', erased_at = $2, proof = $3, blobs_left = $4,
			blocked_by = '' WHERE id = $1 AND patient_id = $5 AND state = 'approved'`, erasureID, now, proofJSON, blobs, patientID)
		if err == nil && tag.RowsAffected() == 0 {
			err = ErrWrongState
		}
		return err
	})
	if err != nil {
		return ErasureProof{}, nil, classify(err)
	}
	return proof, blobs, nil
}

// LegalHold is a hold on a patient's records.
type LegalHold struct {
	Reason, PlacedBy string
	PlacedAt         time.Time
}

// PlaceLegalHold places (or restates) a hold through the patient grain's fence.
func (db *DB) PlaceLegalHold(ctx context.Context, f Fence, patientID string, h LegalHold) error {
	return classify(db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO legal_holds (patient_id, reason, placed_by, placed_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (patient_id) DO UPDATE SET reason = excluded.reason, placed_by = excluded.placed_by, placed_at = excluded.placed_at`,
			patientID, h.Reason, h.PlacedBy, h.PlacedAt)
		return err
	}))
}

// LiftLegalHold lifts a patient's hold; lifting none is no error.
func (db *DB) LiftLegalHold(ctx context.Context, f Fence, patientID string) error {
	return classify(db.fenced(ctx, f, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM legal_holds WHERE patient_id = $1`, patientID)
		return err
	}))
}

// GetLegalHold is the patient's hold; ok false when none stands.
func (db *DB) GetLegalHold(ctx context.Context, patientID string) (h LegalHold, ok bool, err error) {
	err = db.Pool.QueryRow(ctx, `SELECT reason, placed_by, placed_at FROM legal_holds WHERE patient_id = $1`, patientID).
		Scan(&h.Reason, &h.PlacedBy, &h.PlacedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return LegalHold{}, false, nil
	}
	return h, err == nil, classify(err)
}

// Period is a retention period: years and days after a record's date.
type Period struct{ Years, Days int }

// After is when a record dated t is due for deletion.
func (p Period) After(t time.Time) time.Time { return t.AddDate(p.Years, 0, p.Days) }

// Cutoff is the date before which records are past the period at now.
func (p Period) Cutoff(now time.Time) time.Time { return now.AddDate(-p.Years, 0, -p.Days) }

func (p Period) String() string {
	switch {
	case p.Days == 0:
		return strconv.Itoa(p.Years) + "y"
	case p.Years == 0:
		return strconv.Itoa(p.Days) + "d"
	}
	return fmt.Sprintf("%dy%dd", p.Years, p.Days)
}

// Retention is how long each kind of record is kept after its date: a
// visit (with its diagnoses) after it took place, a document after it was
// added, a vaccination after it was given, a change of blood type or
// allergies after it was made, a prescription after it ended, an
// appointment (its reason) after it ended. docs/compliance.md states and
// justifies the defaults.
type Retention struct {
	Visits, Documents, Vaccinations, ClinicalHistory, Prescriptions, Appointments Period
}

// DefaultRetention: 25 years for clinical records, 10 for prescriptions,
// 5 for appointments.
var DefaultRetention = Retention{
	Visits: Period{Years: 25}, Documents: Period{Years: 25}, Vaccinations: Period{Years: 25}, ClinicalHistory: Period{Years: 25},
	Prescriptions: Period{Years: 10}, Appointments: Period{Years: 5},
}

// RetentionKinds are the record kinds Retention configures, as
// ParseRetention spells them.
var RetentionKinds = []string{"visits", "documents", "vaccinations", "clinical-history", "prescriptions", "appointments"}

func (r *Retention) period(kind string) *Period {
	switch kind {
	case "visits":
		return &r.Visits
	case "documents":
		return &r.Documents
	case "vaccinations":
		return &r.Vaccinations
	case "clinical-history":
		return &r.ClinicalHistory
	case "prescriptions":
		return &r.Prescriptions
	case "appointments":
		return &r.Appointments
	}
	return nil
}

// ParseRetention reads "kind=period,..." over DefaultRetention, a period
// being years ("25y"), days ("30d"), both ("1y30d") or "0".
func ParseRetention(s string) (Retention, error) {
	r := DefaultRetention
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kind, spec, ok := strings.Cut(part, "=")
		p := r.period(kind)
		if !ok || p == nil {
			return r, fmt.Errorf("retention %q: want kind=period with kind one of %s", part, strings.Join(RetentionKinds, ", "))
		}
		parsed, err := parsePeriod(spec)
		if err != nil {
			return r, fmt.Errorf("retention %q: %w", part, err)
		}
		*p = parsed
	}
	return r, nil
}

func parsePeriod(s string) (Period, error) {
	var p Period
	if s == "0" {
		return p, nil
	}
	rest := s
	if y, after, ok := strings.Cut(rest, "y"); ok {
		n, err := strconv.Atoi(y)
		if err != nil || n < 0 {
			return p, fmt.Errorf("period %q: want years like 25y, days like 30d", s)
		}
		p.Years, rest = n, after
	}
	if rest != "" {
		d, ok := strings.CutSuffix(rest, "d")
		n, err := strconv.Atoi(d)
		if !ok || err != nil || n < 0 {
			return p, fmt.Errorf("period %q: want years like 25y, days like 30d", s)
		}
		p.Days = n
	}
	if p == (Period{}) && s != "0y" && s != "0d" {
		return p, fmt.Errorf("period %q: want years like 25y, days like 30d", s)
	}
	return p, nil
}

// RetainUntil is when the last of the patient's records leaves its
// retention period (zero: the patient has no records that are kept).
func (db *DB) RetainUntil(ctx context.Context, patientID string, r Retention) (time.Time, error) {
	var v, d, vac, h, rx, appt pgtype.Timestamptz
	err := db.Pool.QueryRow(ctx, `SELECT
		(SELECT max(occurred_at) FROM visits WHERE patient_id = $1),
		(SELECT max(created_at) FROM documents WHERE patient_id = $1),
		(SELECT max(given_on)::TIMESTAMP AT TIME ZONE 'UTC' FROM vaccinations WHERE patient_id = $1),
		(SELECT max(changed_at) FROM patient_clinical_history WHERE patient_id = $1),
		(SELECT max(coalesce(ended_at, expires_at)) FROM prescriptions WHERE patient_id = $1),
		(SELECT max(end_at) FROM appointments WHERE patient_id = $1)`, patientID).Scan(&v, &d, &vac, &h, &rx, &appt)
	if err != nil {
		return time.Time{}, classify(err)
	}
	var until time.Time
	for _, x := range []struct {
		at pgtype.Timestamptz
		p  Period
	}{{v, r.Visits}, {d, r.Documents}, {vac, r.Vaccinations}, {h, r.ClinicalHistory}, {rx, r.Prescriptions}, {appt, r.Appointments}} {
		if x.at.Valid && x.p.After(x.at.Time).After(until) {
			until = x.p.After(x.at.Time)
		}
	}
	return until, nil
}

// PatientsPastRetention lists patients, without a legal hold, who hold a
// record past its retention period at now: the retention sweep's work.
func (db *DB) PatientsPastRetention(ctx context.Context, r Retention, now time.Time, limit int) ([]string, error) {
	rows, err := db.Pool.Query(ctx, `SELECT p::TEXT FROM (
			SELECT patient_id AS p FROM visits WHERE occurred_at < $1
			UNION SELECT patient_id FROM documents WHERE created_at < $2
			UNION SELECT patient_id FROM vaccinations WHERE given_on < $3::DATE
			UNION SELECT patient_id FROM patient_clinical_history WHERE changed_at < $4
			UNION SELECT patient_id FROM prescriptions WHERE status <> 'active' AND coalesce(ended_at, expires_at) < $5
			UNION SELECT patient_id FROM appointments WHERE end_at < $6 AND reason <> ''
		) due WHERE NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.patient_id = due.p)
		AND EXISTS (SELECT 1 FROM patients WHERE id = due.p)
		ORDER BY p LIMIT $7`,
		r.Visits.Cutoff(now), r.Documents.Cutoff(now), r.Vaccinations.Cutoff(now), r.ClinicalHistory.Cutoff(now),
		r.Prescriptions.Cutoff(now), r.Appointments.Cutoff(now), limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, classify(err)
}

// ApplyRetention deletes, through the patient grain's fence, the patient's
// records past their retention period at now (a visit with its diagnoses)
// and blanks the reason of appointments past theirs; nothing while a legal
// hold stands. It returns the counts by kind and the deleted documents'
// blob keys for the caller to delete.
func (db *DB) ApplyRetention(ctx context.Context, f Fence, patientID string, r Retention, now time.Time) (map[string]int64, []string, error) {
	var (
		deleted map[string]int64
		blobs   []string
	)
	err := db.fenced(ctx, f, func(tx pgx.Tx) error {
		deleted, blobs = map[string]int64{}, nil
		var held bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM legal_holds WHERE patient_id = $1)`, patientID).Scan(&held); err != nil || held {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM documents WHERE patient_id = $1 AND created_at < $2 RETURNING blob_key`, patientID, r.Documents.Cutoff(now))
		if err != nil {
			return err
		}
		if blobs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		deleted["documents"] = int64(len(blobs))
		for _, q := range []struct {
			kind, sql string
			cutoff    time.Time
		}{
			{"visits", `DELETE FROM visits WHERE patient_id = $1 AND occurred_at < $2`, r.Visits.Cutoff(now)},
			{"vaccinations", `DELETE FROM vaccinations WHERE patient_id = $1 AND given_on < $2::DATE`, r.Vaccinations.Cutoff(now)},
			{"clinical-history", `DELETE FROM patient_clinical_history WHERE patient_id = $1 AND changed_at < $2`, r.ClinicalHistory.Cutoff(now)},
			{"prescriptions", `DELETE FROM prescriptions WHERE patient_id = $1 AND status <> 'active' AND coalesce(ended_at, expires_at) < $2`, r.Prescriptions.Cutoff(now)},
			{"appointments", `UPDATE appointments SET reason = '' WHERE patient_id = $1 AND end_at < $2 AND reason <> ''`, r.Appointments.Cutoff(now)},
		} {
			tag, err := tx.Exec(ctx, q.sql, patientID, q.cutoff)
			if err != nil {
				return err
			}
			deleted[q.kind] = tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return nil, nil, classify(err)
	}
	return deleted, blobs, nil
}

// ReapplyErasure erases again a patient a restored backup brought back:
// e is an erasure carried out after the backup was taken (as listed by
// ErasureRequests before the restore). It claims the patient's grain (a
// live activation is fenced out), records e as approved, and erases the
// patient as ErasePatient does, whatever holds or appointments the
// backup holds: the decision was made and carried out already. audited
// makes the erasure's audit event, written in the same transaction. It
// returns false when the patient is not in the database (nothing to do).
func (db *DB) ReapplyErasure(ctx context.Context, owner string, e Erasure, now time.Time, audited PendingAudit) (ErasureProof, []string, bool, error) {
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1)`, e.PatientID).Scan(&exists); err != nil || !exists {
		return ErasureProof{}, nil, false, classify(err)
	}
	f, err := db.Claim(ctx, PatientKind, e.PatientID, owner)
	if err != nil {
		return ErasureProof{}, nil, false, err
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM erasure_requests WHERE patient_id = $1 AND state IN ('pending', 'approved') AND id <> $2`,
			e.PatientID, e.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO erasure_requests (id, patient_id, state, requested_by, requested_at, reviewed_by, reviewed_at, review_note)
			VALUES ($1, $2, 'approved', $3, $4, $5, $6, 'applied again after a restore')
			ON CONFLICT (id) DO UPDATE SET state = 'approved', review_note = 'applied again after a restore'`,
			e.ID, e.PatientID, e.RequestedBy, e.RequestedAt, e.ReviewedBy, now)
		return err
	})
	if err != nil {
		return ErasureProof{}, nil, false, classify(err)
	}
	proof, blobs, err := db.erasePatient(WithAudit(ctx, audited), f, e.ID, e.PatientID, now, false)
	return proof, blobs, err == nil, err
}
