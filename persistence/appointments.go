package persistence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrNoAppointment is returned when an appointment id names no row.
var ErrNoAppointment = errors.New("no such appointment")

// ErrClaimTaken is returned when a calendar batch claims a cell that
// another appointment holds. The calendar grain decides bookings so that
// this never happens; the primary key of slot_claims refuses it anyway.
var ErrClaimTaken = errors.New("slot cell already claimed")

// Claim is one grid cell of a doctor's time held by an appointment.
type Claim struct {
	Cell          time.Time
	AppointmentID string
}

// AppointmentUpdate is a new state of an existing appointment, written only
// if the row is still at PrevVersion.
type AppointmentUpdate struct {
	Record      *messages.AppointmentRecord
	PrevVersion int64
}

// NewAppointment is a new appointment with its cells: a hold (status held),
// or a booking whose patient has already accepted it (status booked, with
// its Event). The row, its claims and its event are written only if its
// id is free.
type NewAppointment struct {
	Record      *messages.AppointmentRecord
	Fingerprint []byte
	Cells       []time.Time
	Event       *messages.AppointmentChanged // nil for a hold
}

// CalendarBatch is everything one calendar grain writes in one transaction
// (group commit): holds, status and time changes, claims gained and lost,
// and the events that describe them.
type CalendarBatch struct {
	DoctorID string
	Inserts  []NewAppointment
	Updates  []AppointmentUpdate
	Claims   []Claim // for existing appointments (a reschedule's new cells)
	Unclaims []Claim
	// Drops are holds that ended without a booking (released or expired):
	// their rows go, so that a retry with the same id starts afresh. Their
	// cells must be in Unclaims.
	Drops  []string
	Events []*messages.AppointmentChanged
	// Audit are the audit events of the changes the batch makes for
	// someone, written in its transaction (see WithAudit).
	Audit []PendingAudit
}

// Empty reports whether the batch writes nothing.
func (b *CalendarBatch) Empty() bool {
	return len(b.Inserts)+len(b.Updates)+len(b.Claims)+len(b.Unclaims)+len(b.Drops)+len(b.Events) == 0
}

const appointmentColumns = `id, doctor_id, patient_id, start_at, end_at, status, hold_expires_at,
	reason, booked_by, version, created_at, updated_at, checked_in_by`

func scanAppointment(row pgx.Row, extra ...any) (*messages.AppointmentRecord, error) {
	var (
		id, doctor, patient      uuid.UUID
		start, end, created, upd time.Time
		status                   string
		holdExpires              pgtype.Timestamptz
		a                        = &messages.AppointmentRecord{}
	)
	dest := append([]any{&id, &doctor, &patient, &start, &end, &status, &holdExpires,
		&a.Reason, &a.BookedBy, &a.Version, &created, &upd, &a.CheckedInBy}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	a.Id, a.DoctorId, a.PatientId = id.String(), doctor.String(), patient.String()
	a.Start, a.End = timestamppb.New(start), timestamppb.New(end)
	a.Status, _ = messages.ParseAppointmentStatus(status)
	if holdExpires.Valid {
		a.HoldExpiresAt = timestamppb.New(holdExpires.Time)
	}
	a.CreatedAt, a.UpdatedAt = timestamppb.New(created), timestamppb.New(upd)
	return a, nil
}

func holdExpiry(a *messages.AppointmentRecord) pgtype.Timestamptz {
	if a.HoldExpiresAt == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: a.HoldExpiresAt.AsTime(), Valid: true}
}

// WriteCalendar writes one calendar batch through the fence, in one
// transaction. It returns the ids of new appointments that were not
// inserted because their id was taken (a reused idempotency key, or a
// replay of an appointment the grain no longer keeps in memory): those
// claimed nothing and published nothing. A claim on a taken cell fails the
// whole batch with ErrClaimTaken.
func (db *DB) WriteCalendar(ctx context.Context, f Fence, b *CalendarBatch) (taken []string, err error) {
	w, err := prepareCalendarWrite(b)
	if err != nil {
		return nil, err
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		// Every statement goes out in one pipelined round trip; the fence
		// is checked on the results, and if it failed the transaction,
		// with everything after it, rolls back.
		var q pgx.Batch
		q.Queue(checkFenceSQL, f.Kind, f.ID, f.Epoch)
		w.queue(&q)
		res := tx.SendBatch(ctx, &q)
		var err error
		taken, err = readFenced(res, f, w)
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if isUniqueViolation(err, "slot_claims_pkey") {
		return nil, ErrClaimTaken
	}
	return taken, classify(err)
}

func readFenced(res pgx.BatchResults, f Fence, w *calendarWrite) ([]string, error) {
	tag, err := res.Exec()
	if err != nil {
		return nil, fmt.Errorf("fence %s/%s: %w", f.Kind, f.ID, err)
	}
	if tag.RowsAffected() == 0 {
		countFenceConflict(f.Kind)
		return nil, ErrFenced
	}
	return w.read(res)
}

// FencedCalendarBatch is one calendar activation's batch and its fence.
type FencedCalendarBatch struct {
	Fence Fence
	Batch *CalendarBatch
}

// CalendarResult is what became of one batch of WriteCalendars: as
// WriteCalendar returns it.
type CalendarResult struct {
	Taken []string
	Err   error
	// Pending: the batch was written alone, its audit events left in
	// audit_pending for the member's chain to chain (with ChainedAudit,
	// the others' are chained already).
	Pending bool
}

// ChainedAudit makes a group transaction of WriteCalendarsChained chain its
// batches' audit events itself, onto a chain of the caller's that no other
// process appends to, instead of leaving them in audit_pending for the
// member's chain: one statement and no second transaction per group.
type ChainedAudit struct {
	// Fence is the chain's fence, checked by the append statement.
	Fence Fence
	// Rows turns events into the rows that continue the chain's head. It
	// may be called again if the transaction retries, so it must depend
	// on its input only.
	Rows func(events []PendingAudit) ([]AuditRow, error)
}

// CalendarGroup is what WriteCalendarsChained did.
type CalendarGroup struct {
	Results []CalendarResult
	// Chained are the audit rows the group's transaction appended to the
	// ChainedAudit's chain; ChainHeld is false if the chain's head may
	// not be what the caller holds (the transaction failed, or it did
	// not run): the caller must read the head again.
	Chained   []AuditRow
	ChainHeld bool
}

// WriteCalendars writes many calendars' batches in one transaction (a
// member groups what its calendar grains write at the same time: one
// commit instead of one per doctor). Each batch still passes its own
// fence: the fences are checked first, all in one statement that holds
// their share locks, and a batch whose fence does not hold, or whose owner
// row is locked by a claim in progress, is left out and written alone
// (WriteCalendar: it waits for the claim, and a fenced one gets
// ErrFenced), while the others commit. Should a live
// batch fail (a claim taken, a stale version: what the grains' own
// decisions rule out), the transaction is dropped and each batch is
// written alone, so that only that batch hears its error.
func (db *DB) WriteCalendars(ctx context.Context, batches []FencedCalendarBatch) []CalendarResult {
	return db.WriteCalendarsChained(ctx, batches, nil).Results
}

// WriteCalendarsChained is WriteCalendars whose group transaction chains
// its audit events onto chained's chain (nil: leaves them pending, as
// WriteCalendars). Batches written alone leave theirs pending
// (CalendarResult.Pending).
func (db *DB) WriteCalendarsChained(ctx context.Context, batches []FencedCalendarBatch, chained *ChainedAudit) CalendarGroup {
	out := make([]CalendarResult, len(batches))
	alone := func(i int) {
		b := batches[i]
		out[i].Taken, out[i].Err = db.WriteCalendar(WithAudit(ctx, b.Batch.Audit...), b.Fence, b.Batch)
		out[i].Pending = true
	}
	if len(batches) == 1 && chained == nil {
		alone(0)
		return CalendarGroup{Results: out, ChainHeld: true}
	}
	audits := make([][]pendingAuditRow, len(batches))
	kinds, ids, epochs := make([]string, len(batches)), make([]string, len(batches)), make([]int64, len(batches))
	for i, b := range batches {
		audits[i] = newPendingRows(b.Batch.Audit)
		kinds[i], ids[i], epochs[i] = b.Fence.Kind, b.Fence.ID, b.Fence.Epoch
	}
	var (
		live    []bool
		taken   []string
		chainOf []AuditRow
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		chainOf = nil
		rows, err := tx.Query(ctx, `SELECT u.n::INT FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[]) WITH ORDINALITY AS u (kind, id, epoch, n)
			JOIN grain_owner g ON g.kind = u.kind AND g.id = u.id AND g.epoch = u.epoch FOR SHARE OF g SKIP LOCKED`, kinds, ids, epochs)
		if err != nil {
			return fmt.Errorf("fences: %w", err)
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return fmt.Errorf("fences: %w", err)
		}
		live = make([]bool, len(batches))
		var group []*CalendarBatch
		var pending []pendingAuditRow
		var events []PendingAudit
		for _, n := range found {
			live[n-1] = true
		}
		for i, b := range batches {
			if live[i] {
				group = append(group, b.Batch)
				pending = append(pending, audits[i]...)
				events = append(events, b.Batch.Audit...)
			}
		}
		// The live batches' rows go in the statements of one batch.
		w, err := prepareCalendarWrite(group...)
		if err != nil {
			return err
		}
		var q pgx.Batch
		w.queue(&q)
		switch {
		case chained != nil && len(events) > 0:
			if chainOf, err = chained.Rows(events); err != nil {
				return err
			}
			q.Queue(appendAuditSQL, appendAuditArgs(chained.Fence, chainOf)...)
		case len(pending) > 0:
			args, err := pendingAuditArgs(pending)
			if err != nil {
				return err
			}
			q.Queue(insertPendingAuditSQL, args...)
		}
		if q.Len() == 0 {
			return nil
		}
		res := tx.SendBatch(ctx, &q)
		taken, err = w.read(res)
		switch {
		case err != nil:
		case len(chainOf) > 0:
			var tag pgconn.CommandTag
			if tag, err = res.Exec(); err == nil {
				err = appendAuditWrote(chained.Fence, tag, len(chainOf))
			}
		case len(pending) > 0:
			_, err = res.Exec()
		}
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		// Written alone, each batch hears its own outcome.
		var wg sync.WaitGroup
		for i := range batches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				alone(i)
			}()
		}
		wg.Wait()
		return CalendarGroup{Results: out, ChainHeld: chained == nil}
	}
	isTaken := make(map[string]bool, len(taken))
	for _, id := range taken {
		isTaken[id] = true
	}
	var wg sync.WaitGroup
	for i, b := range batches {
		if !live[i] {
			// Fenced, or its owner row is locked (a new activation is
			// claiming it): written alone, it waits for the lock and hears
			// which, without holding up the group.
			wg.Add(1)
			go func() {
				defer wg.Done()
				alone(i)
			}()
			continue
		}
		out[i].Pending = chained == nil
		for _, a := range b.Batch.Inserts {
			if isTaken[a.Record.Id] {
				out[i].Taken = append(out[i].Taken, a.Record.Id)
			}
		}
	}
	wg.Wait()
	return CalendarGroup{Results: out, Chained: chainOf, ChainHeld: true}
}

// calendarWrite is the statements of one or more calendars' batches,
// ready to queue: every row carries its doctor, so that many doctors'
// batches cost the statements of one.
type calendarWrite struct {
	batches  []*CalendarBatch
	unclaims claimArrays
	claims   claimArrays
	drops    []string
	updates  []AppointmentUpdate
	inserts  *insertArrays
	events   []*messages.AppointmentChanged
	payloads [][]byte
}

// claimArrays are slot claims as the columns of one statement.
type claimArrays struct {
	doctors, appts []string
	cells          []time.Time
}

func (c *claimArrays) add(doctor string, cs []Claim) {
	for _, cl := range cs {
		c.doctors, c.cells, c.appts = append(c.doctors, doctor), append(c.cells, cl.Cell), append(c.appts, cl.AppointmentID)
	}
}

func prepareCalendarWrite(bs ...*CalendarBatch) (*calendarWrite, error) {
	w := &calendarWrite{batches: bs}
	var inserts []NewAppointment
	var insertDoctors []string
	for _, b := range bs {
		w.unclaims.add(b.DoctorID, b.Unclaims)
		w.claims.add(b.DoctorID, b.Claims)
		w.drops = append(w.drops, b.Drops...)
		w.updates = append(w.updates, b.Updates...)
		inserts = append(inserts, b.Inserts...)
		for range b.Inserts {
			insertDoctors = append(insertDoctors, b.DoctorID)
		}
		for _, e := range b.Events {
			payload, err := proto.Marshal(e)
			if err != nil {
				return nil, err
			}
			w.events, w.payloads = append(w.events, e), append(w.payloads, payload)
		}
	}
	var err error
	w.inserts, err = newAppointmentArrays(inserts, insertDoctors)
	return w, err
}

// queue queues the statements after the fence check.
func (w *calendarWrite) queue(q *pgx.Batch) {
	queueUnclaims(q, w.unclaims)
	queueDrops(q, w.drops)
	queueUpdates(q, w.updates)
	queueInserts(q, w.inserts)
	queueClaims(q, w.claims)
	queueAppointmentEvents(q, w.events, w.payloads)
}

// The calendar batch's statements, queued in this order: the fence, then
// claims lost, holds dropped, updates, new appointments (with their claims
// and events) and claims gained, then the events. readCalendarResults reads them in the
// same order.

// The joins with unnest below also name their keys with = ANY: a cached
// generic plan otherwise may hash-join a sequential scan of the whole table
// (seen: every confirm scanned all appointments, slower as the table grew).

func queueUnclaims(q *pgx.Batch, c claimArrays) {
	if len(c.cells) == 0 {
		return
	}
	q.Queue(`DELETE FROM slot_claims s USING unnest($1::TEXT[]::UUID[], $2::TIMESTAMPTZ[], $3::TEXT[]::UUID[]) AS u (doctor, cell, appt)
		WHERE s.doctor_id = ANY($1::TEXT[]::UUID[]) AND s.cell_start = ANY($2::TIMESTAMPTZ[])
			AND s.doctor_id = u.doctor AND s.cell_start = u.cell AND s.appointment_id = u.appt`,
		c.doctors, c.cells, c.appts)
}

func queueClaims(q *pgx.Batch, c claimArrays) {
	if len(c.cells) == 0 {
		return
	}
	q.Queue(`INSERT INTO slot_claims (doctor_id, cell_start, appointment_id)
		SELECT u.doctor, u.cell, u.appt FROM unnest($1::TEXT[]::UUID[], $2::TIMESTAMPTZ[], $3::TEXT[]::UUID[]) AS u (doctor, cell, appt)`,
		c.doctors, c.cells, c.appts)
}

func queueDrops(q *pgx.Batch, ids []string) {
	if len(ids) == 0 {
		return
	}
	q.Queue(`DELETE FROM appointments WHERE id = ANY($1::TEXT[]::UUID[]) AND status = $2`,
		ids, messages.AppointmentStatus_APPOINTMENT_STATUS_HELD.Name())
}

func queueUpdates(q *pgx.Batch, us []AppointmentUpdate) {
	if len(us) == 0 {
		return
	}
	n := len(us)
	ids, statuses, checkedInBy := make([]string, n), make([]string, n), make([]string, n)
	starts, ends, updated := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	holds := make([]pgtype.Timestamptz, n)
	versions, prev := make([]int64, n), make([]int64, n)
	for i, u := range us {
		a := u.Record
		ids[i], statuses[i], starts[i], ends[i] = a.Id, a.Status.Name(), a.Start.AsTime(), a.End.AsTime()
		holds[i], versions[i], updated[i], prev[i] = holdExpiry(a), a.Version, a.UpdatedAt.AsTime(), u.PrevVersion
		checkedInBy[i] = a.CheckedInBy
	}
	// One statement for the batch (a statement per row cost more than the
	// rows did). Each row still passes its own version check, and id = ANY
	// keeps the plan an index lookup (see above). The grain never puts two
	// updates of one appointment in a batch (one op per id); if it did, one
	// would not apply and the batch would fail as stale.
	q.Queue(`UPDATE appointments a SET status = u.status, start_at = u.start_at, end_at = u.end_at,
			hold_expires_at = u.hold, version = u.version, updated_at = u.updated, checked_in_by = u.checked_in_by
		FROM unnest($1::TEXT[]::UUID[], $2::TEXT[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[], $5::TIMESTAMPTZ[], $6::BIGINT[], $7::TIMESTAMPTZ[], $8::BIGINT[], $9::TEXT[])
			AS u (id, status, start_at, end_at, hold, version, updated, prev, checked_in_by)
		WHERE a.id = ANY($1::TEXT[]::UUID[]) AND a.id = u.id AND a.version = u.prev`,
		ids, statuses, starts, ends, holds, versions, updated, prev, checkedInBy)
}

// insertArrays is a batch's new appointments, their claims and their
// events as the column arrays of one statement.
type insertArrays struct {
	doctors, cellDoctors, eventDoctors         []string
	ids, patients, statuses, reasons, bookedBy []string
	checkedInBy                                []string
	starts, ends, created, updated             []time.Time
	holds                                      []pgtype.Timestamptz
	versions                                   []int64
	fps                                        [][]byte
	cells                                      []time.Time
	cellAppts                                  []string
	eventIDs                                   []uuid.UUID
	eventAppts                                 []string
	eventVersions                              []int64
	eventPayloads                              [][]byte
}

func newAppointmentArrays(ns []NewAppointment, doctors []string) (*insertArrays, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	n := len(ns)
	r := &insertArrays{doctors: doctors, ids: make([]string, n), patients: make([]string, n), statuses: make([]string, n), reasons: make([]string, n),
		bookedBy: make([]string, n), checkedInBy: make([]string, n), starts: make([]time.Time, n), ends: make([]time.Time, n), created: make([]time.Time, n),
		updated: make([]time.Time, n), holds: make([]pgtype.Timestamptz, n), versions: make([]int64, n), fps: make([][]byte, n)}
	for i, na := range ns {
		a := na.Record
		r.ids[i], r.patients[i], r.statuses[i], r.reasons[i], r.bookedBy[i] = a.Id, a.PatientId, a.Status.Name(), a.Reason, a.BookedBy
		r.checkedInBy[i] = a.CheckedInBy
		r.starts[i], r.ends[i], r.created[i], r.updated[i] = a.Start.AsTime(), a.End.AsTime(), a.CreatedAt.AsTime(), a.UpdatedAt.AsTime()
		r.holds[i], r.versions[i], r.fps[i] = holdExpiry(a), a.Version, nonNil(na.Fingerprint)
		for _, c := range na.Cells {
			r.cells, r.cellAppts, r.cellDoctors = append(r.cells, c), append(r.cellAppts, a.Id), append(r.cellDoctors, doctors[i])
		}
		if na.Event != nil {
			payload, err := proto.Marshal(na.Event)
			if err != nil {
				return nil, err
			}
			r.eventIDs, r.eventAppts = append(r.eventIDs, uuid.New()), append(r.eventAppts, a.Id)
			r.eventDoctors = append(r.eventDoctors, doctors[i])
			r.eventVersions, r.eventPayloads = append(r.eventVersions, na.Event.GetAppointment().GetVersion()), append(r.eventPayloads, payload)
		}
	}
	return r, nil
}

// queueInserts inserts new appointments and, only for those whose id was
// free, their claims and events; the statement returns the ids it inserted.
func queueInserts(q *pgx.Batch, r *insertArrays) {
	if r == nil {
		return
	}
	q.Queue(`WITH ins AS (
			INSERT INTO appointments (id, doctor_id, patient_id, start_at, end_at, status, hold_expires_at,
				reason, fingerprint, booked_by, version, created_at, updated_at, checked_in_by)
			SELECT u.id, u.doctor, u.patient, u.start_at, u.end_at, u.status, u.hold, u.reason, u.fp, u.booked_by, u.version, u.created, u.updated, u.checked_in_by
			FROM unnest($2::TEXT[]::UUID[], $3::TEXT[]::UUID[], $4::TIMESTAMPTZ[], $5::TIMESTAMPTZ[], $6::TEXT[], $7::TIMESTAMPTZ[],
				$8::TEXT[], $9::BYTEA[], $10::TEXT[], $11::BIGINT[], $12::TIMESTAMPTZ[], $13::TIMESTAMPTZ[], $24::TEXT[], $1::TEXT[]::UUID[])
				AS u (id, patient, start_at, end_at, status, hold, reason, fp, booked_by, version, created, updated, checked_in_by, doctor)
			ON CONFLICT (id) DO NOTHING
			RETURNING id
		), claimed AS (
			INSERT INTO slot_claims (doctor_id, cell_start, appointment_id)
			SELECT c.doctor, c.cell, c.appt FROM unnest($14::TIMESTAMPTZ[], $15::TEXT[]::UUID[], $25::TEXT[]::UUID[]) AS c (cell, appt, doctor)
			WHERE c.appt IN (SELECT id FROM ins)
			RETURNING 1
		), published AS ( -- a nil array (no events) is NULL: unnest yields no rows
			INSERT INTO outbox (id, aggregate_kind, aggregate_id, aggregate_version, event_type, payload, created_at)
			SELECT e.id, $16, e.doctor, e.version, $18, e.payload, $19
			FROM unnest($20::UUID[], $21::TEXT[]::UUID[], $22::BIGINT[], $23::BYTEA[], $17::TEXT[]) AS e (id, appt, version, payload, doctor)
			WHERE e.appt IN (SELECT id FROM ins)
			RETURNING 1
		)
		SELECT id::TEXT FROM ins`,
		r.doctors, r.ids, r.patients, r.starts, r.ends, r.statuses, r.holds, r.reasons, r.fps, r.bookedBy, r.versions, r.created, r.updated,
		r.cells, r.cellAppts,
		CalendarKind, r.eventDoctors, appointmentChangedType, time.Now().UTC(), r.eventIDs, r.eventAppts, r.eventVersions, r.eventPayloads,
		r.checkedInBy, r.cellDoctors)
}

// appointmentChangedType is the outbox event_type of calendar events.
var appointmentChangedType = string(proto.MessageName(&messages.AppointmentChanged{}))

func queueAppointmentEvents(q *pgx.Batch, events []*messages.AppointmentChanged, payloads [][]byte) {
	if len(events) == 0 {
		return
	}
	n := len(events)
	ids, aggs, types := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	versions := make([]int64, n)
	for i, e := range events {
		ids[i], aggs[i], types[i], versions[i] = uuid.New(), e.GetAppointment().GetDoctorId(), appointmentChangedType, e.GetAppointment().GetVersion()
	}
	q.Queue(`INSERT INTO outbox (id, aggregate_kind, aggregate_id, aggregate_version, event_type, payload, created_at)
		SELECT u.id, $1, u.agg, u.version, u.type, u.payload, $2
		FROM unnest($3::UUID[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::BYTEA[]) AS u (id, agg, version, type, payload)`,
		CalendarKind, time.Now().UTC(), ids, aggs, versions, types, payloads)
}

// read checks each queued statement's result in queue order and returns
// the ids of holds that were not inserted.
func (w *calendarWrite) read(res pgx.BatchResults) ([]string, error) {
	if len(w.unclaims.cells) > 0 {
		if _, err := res.Exec(); err != nil {
			return nil, fmt.Errorf("unclaim: %w", err)
		}
	}
	if len(w.drops) > 0 {
		tag, err := res.Exec()
		if err == nil && int(tag.RowsAffected()) != len(w.drops) {
			err = fmt.Errorf("%w (%d of %d deleted)", ErrStale, tag.RowsAffected(), len(w.drops))
		}
		if err != nil {
			return nil, fmt.Errorf("drop holds: %w", err)
		}
	}
	if len(w.updates) > 0 {
		tag, err := res.Exec()
		if err == nil && int(tag.RowsAffected()) != len(w.updates) {
			err = fmt.Errorf("%w: %d of %d appointments at their expected version", ErrStale, tag.RowsAffected(), len(w.updates))
		}
		if err != nil {
			return nil, fmt.Errorf("appointments: %w", err)
		}
	}
	var taken []string
	if w.inserts.len() > 0 {
		rows, err := res.Query()
		if err != nil {
			return nil, fmt.Errorf("holds: %w", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("holds: %w", err)
		}
		if len(inserted) != w.inserts.len() {
			got := make(map[string]bool, len(inserted))
			for _, id := range inserted {
				got[id] = true
			}
			for _, id := range w.inserts.ids {
				if !got[id] {
					taken = append(taken, id)
				}
			}
		}
	}
	if len(w.claims.cells) > 0 {
		if _, err := res.Exec(); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
	}
	if len(w.events) > 0 {
		if _, err := res.Exec(); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	return taken, nil
}

// len is how many appointments r inserts (nil: none).
func (r *insertArrays) len() int {
	if r == nil {
		return 0
	}
	return len(r.ids)
}

// LiveStatuses are the statuses whose appointment occupies its time.
var LiveStatuses = []string{
	messages.AppointmentStatus_APPOINTMENT_STATUS_HELD.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN.Name(),
}

// loadCalendarAppointments reads the appointments a new calendar
// activation keeps in memory: those that hold time ending after since.
func loadCalendarAppointments(ctx context.Context, tx pgx.Tx, doctor string, since time.Time) ([]StoredAppointment, error) {
	rows, err := tx.Query(ctx, `SELECT `+appointmentColumns+`, fingerprint FROM appointments
		WHERE doctor_id = $1 AND end_at > $2 AND status = ANY($3) ORDER BY start_at`, doctor, since, LiveStatuses)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredAppointment, error) {
		var sa StoredAppointment
		var err error
		sa.Record, err = scanAppointment(r, &sa.Fingerprint)
		return sa, err
	})
}

// StoredAppointment is an appointment with the fingerprint of the request
// that created it.
type StoredAppointment struct {
	Record      *messages.AppointmentRecord
	Fingerprint []byte
}

// GetAppointment reads one appointment and the fingerprint of the request
// that created it; ErrNoAppointment when there is none.
func (db *DB) GetAppointment(ctx context.Context, id string) (*messages.AppointmentRecord, []byte, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, nil, ErrNoAppointment
	}
	var fp []byte
	a, err := scanAppointment(db.Pool.QueryRow(ctx, `SELECT `+appointmentColumns+`, fingerprint FROM appointments WHERE id = $1`, id), &fp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, ErrNoAppointment
	}
	if err != nil {
		return nil, nil, classify(err)
	}
	return a, fp, nil
}

// AppointmentDoctor returns the doctor whose calendar owns an appointment
// (it never changes); ErrNoAppointment when there is none.
func (db *DB) AppointmentDoctor(ctx context.Context, id string) (string, error) {
	if _, err := uuid.Parse(id); err != nil {
		return "", ErrNoAppointment
	}
	var doctor uuid.UUID
	err := db.Pool.QueryRow(ctx, `SELECT doctor_id FROM appointments WHERE id = $1`, id).Scan(&doctor)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNoAppointment
	}
	if err != nil {
		return "", classify(err)
	}
	return doctor.String(), nil
}

// agendaStatuses are what an agenda and a patient's list show: appointments
// that were booked, whatever became of them (not holds that never were).
var agendaStatuses = []string{
	messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_COMPLETED.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED.Name(),
}

// DoctorAgenda lists a doctor's booked appointments that start in [from, to).
func (db *DB) DoctorAgenda(ctx context.Context, doctor string, from, to time.Time, limit int) ([]*messages.AppointmentRecord, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments
		WHERE doctor_id = $1 AND start_at >= $2 AND start_at < $3 AND status = ANY($4)
		ORDER BY start_at, id LIMIT $5`, doctor, from, to, agendaStatuses, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.AppointmentRecord, error) { return scanAppointment(r) })
	return out, classify(err)
}

// PatientAppointments lists a patient's booked appointments in start order,
// after the (start, id) position `after` (keyset paging).
func (db *DB) PatientAppointments(ctx context.Context, patient string, afterStart time.Time, afterID string, limit int) ([]*messages.AppointmentRecord, error) {
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments
		WHERE patient_id = $1 AND status = ANY($2) AND (start_at, id) > ($3, $4::UUID)
		ORDER BY start_at, id LIMIT $5`, patient, agendaStatuses, afterStart, afterID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.AppointmentRecord, error) { return scanAppointment(r) })
	return out, classify(err)
}

// DoctorClaims returns every claim of a doctor (tests and operators check
// that no two appointments share a cell and that claims match appointments).
func (db *DB) DoctorClaims(ctx context.Context, doctor string) ([]Claim, error) {
	rows, err := db.Pool.Query(ctx, `SELECT cell_start, appointment_id::TEXT FROM slot_claims WHERE doctor_id = $1 ORDER BY cell_start`, doctor)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Claim])
	return out, classify(err)
}

// Reservation is a patient's reservation row joined with what became of
// its appointment (Appointment is nil when the calendar never wrote it).
type Reservation struct {
	AppointmentID string
	DoctorID      string
	Start, End    time.Time
	PendingUntil  time.Time
	Appointment   *messages.AppointmentRecord
}

// PatientReservations reads a patient's reservations that may still hold
// time after since, each with its appointment. The patient grain reads them
// after claiming its identity, so no reservation that can still commit is missed.
func (db *DB) PatientReservations(ctx context.Context, patient string, since time.Time) ([]Reservation, error) {
	// The lateral subquery with OFFSET 0 is not merged into a join, so each
	// reservation looks its appointment up by primary key; as a plain join,
	// a plan made while the table had no statistics hashed every appointment.
	rows, err := db.Pool.Query(ctx, `SELECT r.appointment_id::TEXT, r.doctor_id::TEXT, r.start_at, r.end_at, r.pending_until, a.id IS NOT NULL,
			COALESCE(a.status, ''), COALESCE(a.start_at, r.start_at), COALESCE(a.end_at, r.end_at), a.hold_expires_at
		FROM patient_reservations r
		LEFT JOIN LATERAL (SELECT id, status, start_at, end_at, hold_expires_at FROM appointments
			WHERE id = r.appointment_id OFFSET 0) a ON true
		WHERE r.patient_id = $1 AND (r.end_at > $2 OR a.end_at > $2)`, patient, since)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reservation, error) {
		var (
			r          Reservation
			found      bool
			status     string
			start, end time.Time
			hold       pgtype.Timestamptz
		)
		if err := row.Scan(&r.AppointmentID, &r.DoctorID, &r.Start, &r.End, &r.PendingUntil, &found, &status, &start, &end, &hold); err != nil {
			return r, err
		}
		if found {
			r.Appointment = &messages.AppointmentRecord{Id: r.AppointmentID, DoctorId: r.DoctorID, PatientId: patient,
				Status: must(messages.ParseAppointmentStatus(status)),
				Start:  timestamppb.New(start), End: timestamppb.New(end)}
			if hold.Valid {
				r.Appointment.HoldExpiresAt = timestamppb.New(hold.Time)
			}
		}
		return r, nil
	})
	return out, classify(err)
}

func must[T any](v T, _ bool) T { return v }

// CareWindow is how long around an appointment's start it lets its
// doctor read the patient's record: from Before the start to After it.
type CareWindow struct {
	Before, After time.Duration
	// Emergency is how long a break-the-glass grant lasts (zero: the
	// default's).
	Emergency time.Duration
}

// DefaultCareWindow: a week to prepare, three months to follow up, four
// hours of emergency access.
var DefaultCareWindow = CareWindow{Before: 7 * 24 * time.Hour, After: 90 * 24 * time.Hour, Emergency: 4 * time.Hour}

// DoctorTreats reports until when a doctor may read a patient's record at
// now (zero: not now). What grants it, and nothing else:
//   - the patient's care team (set by the desk or an admin): no end;
//   - an appointment that is booked, checked in or completed, within the
//     window around its start, and that someone other than the doctor
//     booked (the patient, the desk, an admin) or the desk checked in.
//
// A doctor who books or checks in an appointment with himself gains
// nothing by it; cancelled, missed (no-show), held and expired
// appointments grant nothing; and nothing grants a doctor the patient has
// blocked, by name or by clinic (patient_restrictions). An emergency
// access (EmergencyUntil) lets a doctor read, not write: it is not here.
func (db *DB) DoctorTreats(ctx context.Context, doctorID, patientID string, now time.Time, w CareWindow) (time.Time, error) {
	until, limited, err := db.doctorAccess(ctx, doctorID, patientID, now, w)
	if limited {
		return time.Time{}, err // the patient limited the doctor to demographics
	}
	return until, err
}

// EmergencyUntil is until when a doctor's live emergency access to a
// patient's record lasts at now (zero: none). It lets them read, past any
// restriction, never write: it is not in DoctorTreats.
func (db *DB) EmergencyUntil(ctx context.Context, doctorID, patientID string, now time.Time) (time.Time, error) {
	var until pgtype.Timestamptz
	err := db.Pool.QueryRow(ctx, `SELECT max(expires_at) FROM emergency_access
		WHERE patient_id = $1 AND doctor_id = $2 AND expires_at > $3`, patientID, doctorID, now).Scan(&until)
	return until.Time, classify(err)
}

// DoctorLimited reports whether a doctor would treat a patient at now but
// the patient has limited them to demographics: they see what the desk
// sees, never the clinical record.
func (db *DB) DoctorLimited(ctx context.Context, doctorID, patientID string, now time.Time, w CareWindow) (bool, error) {
	until, limited, err := db.doctorAccess(ctx, doctorID, patientID, now, w)
	return limited && now.Before(until), err
}

// doctorAccess is DoctorTreats before a demographics-only restriction, and
// whether one holds.
func (db *DB) doctorAccess(ctx context.Context, doctorID, patientID string, now time.Time, w CareWindow) (time.Time, bool, error) {
	var (
		team, limited bool
		until         pgtype.Timestamptz
	)
	err := db.Pool.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM care_team WHERE patient_id = $1 AND doctor_id = $2) AND `+notBlocked("$1::UUID", "$2::UUID")+`,
			(SELECT max(start_at) FROM appointments a WHERE a.patient_id = $1 AND a.doctor_id = $2 AND `+grantingAppointment("$3", "$4", "$5")+`
				AND `+notBlocked("$1::UUID", "$2::UUID")+`),
			`+limitedTo("$1::UUID", "$2::UUID"),
		patientID, doctorID, now, w.Before, w.After).Scan(&team, &until, &limited)
	switch {
	case err != nil:
		return time.Time{}, false, classify(err)
	case team:
		return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), limited, nil
	case until.Valid:
		return until.Time.Add(w.After), limited, nil
	}
	return time.Time{}, limited, nil
}

// grantingAppointment is the condition under which an appointment a lets
// its doctor read its patient's record at the instant now: from before
// its start to after it (SQL parameters: an instant and two intervals).
// DoctorTreats and AccessGrants share it, so that what a patient is shown
// is what is enforced.
func grantingAppointment(now, before, after string) string {
	return `a.status IN ('booked', 'checked_in', 'completed')
	AND (a.booked_by <> a.doctor_id::TEXT OR (a.checked_in_by <> '' AND a.checked_in_by <> a.doctor_id::TEXT))
	AND a.start_at >= ` + now + `::TIMESTAMPTZ - ` + after + `::INTERVAL AND a.start_at <= ` + now + `::TIMESTAMPTZ + ` + before + `::INTERVAL`
}

// Grant is one reason a doctor may read a patient's record now.
type Grant struct {
	DoctorID string
	// Reason is "care-team" (Since is when the doctor was added; no end),
	// "appointment" (the latest appointment that grants it, AppointmentID
	// starting at AppointmentStart; Until is when the grant lapses) or
	// "emergency" (a break-the-glass read access, granted at Since, until
	// Until).
	Reason           string
	Since, Until     time.Time
	AppointmentID    string
	AppointmentStart time.Time
	// DemographicsOnly: the patient limited this doctor to what the desk
	// sees; no clinical record.
	DemographicsOnly bool
}

// AccessGrants lists every doctor who may read a patient's record at now
// and why, by the rules of DoctorTreats: the care team, and for each other
// doctor their latest granting appointment within the window; and every
// live emergency access (EmergencyUntil).
func (db *DB) AccessGrants(ctx context.Context, patientID string, now time.Time, w CareWindow) ([]Grant, error) {
	rows, err := db.Pool.Query(ctx, `SELECT doctor_id::TEXT, 'care-team', added_at, NULL::TIMESTAMPTZ, '', NULL::TIMESTAMPTZ,
				`+limitedTo("$1::UUID", "t.doctor_id")+`
			FROM care_team t WHERE t.patient_id = $1 AND `+notBlocked("$1::UUID", "t.doctor_id")+`
		UNION ALL
		(SELECT DISTINCT ON (a.doctor_id) a.doctor_id::TEXT, 'appointment', a.created_at, a.start_at + $4::INTERVAL, a.id::TEXT, a.start_at,
				`+limitedTo("$1::UUID", "a.doctor_id")+`
			FROM appointments a WHERE a.patient_id = $1
			AND NOT EXISTS (SELECT 1 FROM care_team t WHERE t.patient_id = $1 AND t.doctor_id = a.doctor_id)
			AND `+grantingAppointment("$2", "$3", "$4")+` AND `+notBlocked("$1::UUID", "a.doctor_id")+`
			ORDER BY a.doctor_id, a.start_at DESC)
		UNION ALL
		(SELECT DISTINCT ON (e.doctor_id) e.doctor_id::TEXT, 'emergency', e.granted_at, e.expires_at, '', NULL::TIMESTAMPTZ, FALSE
			FROM emergency_access e WHERE e.patient_id = $1 AND e.expires_at > $2
			ORDER BY e.doctor_id, e.expires_at DESC)
		ORDER BY 1, 2`, patientID, now, w.Before, w.After)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Grant, error) {
		var (
			g            Grant
			until, start pgtype.Timestamptz
		)
		err := r.Scan(&g.DoctorID, &g.Reason, &g.Since, &until, &g.AppointmentID, &start, &g.DemographicsOnly)
		g.Until, g.AppointmentStart = until.Time, start.Time
		return g, err
	})
	return out, classify(err)
}

// DayQuery is one page of a day's appointments at a clinic or of a
// doctor (at least one of the two), on Date (YYYY-MM-DD) in each doctor's
// own time zone, in the given statuses (nil: every status an agenda
// shows), after the (start, id) position of the previous page.
type DayQuery struct {
	Clinic, Doctor string
	Date           time.Time
	Statuses       []string
	AfterStart     time.Time
	AfterID        string
	Limit          int
}

// DayAppointments lists a day's appointments by start (the desk's list of
// who comes today). The day is each doctor's local day; the UTC range
// around it lets the (doctor_id, start_at) index do the walking.
func (db *DB) DayAppointments(ctx context.Context, q DayQuery) ([]*messages.AppointmentRecord, error) {
	statuses := q.Statuses
	if len(statuses) == 0 {
		statuses = agendaStatuses
	}
	afterID := q.AfterID
	if afterID == "" {
		afterID = uuid.Nil.String()
	}
	day := q.Date.Format(time.DateOnly)
	rows, err := db.Pool.Query(ctx, `SELECT `+prefixed("a.", appointmentColumns)+` FROM appointments a JOIN doctors d ON d.id = a.doctor_id
		WHERE ($1 = '' OR d.clinic_id = nullif($1, '')::UUID) AND ($2 = '' OR a.doctor_id = nullif($2, '')::UUID)
		AND a.start_at >= (($3::DATE - 1)::TIMESTAMP AT TIME ZONE 'UTC') AND a.start_at < (($3::DATE + 2)::TIMESTAMP AT TIME ZONE 'UTC')
		AND (a.start_at AT TIME ZONE d.time_zone)::DATE = $3::DATE
		AND a.status = ANY($4) AND (a.start_at, a.id) > ($5, $6::UUID)
		ORDER BY a.start_at, a.id LIMIT $7`, q.Clinic, q.Doctor, day, statuses, q.AfterStart, afterID, q.Limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.AppointmentRecord, error) { return scanAppointment(r) })
	return out, classify(err)
}

// prefixed qualifies a column list with a table alias.
func prefixed(alias, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = alias + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}
