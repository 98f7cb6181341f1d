package persistence

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Patient reservations are the one write of a booking that no grain
// batches: each belongs to a different patient's grain. Committed one by
// one, they cost a round trip and a WAL flush per booking, which bounds a
// hot doctor's bookings per second. So the process group-commits them: a
// reservation waits while the previous batch is in flight, then goes with
// every other that arrived meanwhile, in one statement. Each row still
// passes its own patient's fence; one stale fence fails only its own row.

// maxReserveBatch bounds one statement's rows.
const maxReserveBatch = 512

type reserveCall struct {
	f       Fence
	patient string
	r       Reservation
	done    chan error // buffered: the writer never blocks on a caller that gave up
}

// reserveBatcher is the DB's reservation group commit; its writer starts
// with the first reservation and stops with Close.
type reserveBatcher struct {
	once  sync.Once
	stop  sync.Once
	calls chan *reserveCall
	quit  chan struct{}
}

func (db *DB) reserveQueue() chan *reserveCall {
	b := &db.reserve
	b.once.Do(func() {
		b.calls = make(chan *reserveCall, maxReserveBatch)
		b.quit = make(chan struct{})
		go db.writeReservations(b)
	})
	return b.calls
}

// ReservePatient records, through the patient's fence, that the patient
// took on an appointment's time (replacing the earlier time of the same
// appointment). It returns once the batch it joined has committed. Per row,
// the fence share-locks grain_owner's row (a new activation's claim waits
// for it, see checkFenceSQL) and the insert happens only if it found this epoch.
func (db *DB) ReservePatient(ctx context.Context, f Fence, patient string, r Reservation) error {
	call := &reserveCall{f: f, patient: patient, r: r, done: make(chan error, 1)}
	select {
	case db.reserveQueue() <- call:
	case <-ctx.Done():
		return fmt.Errorf("reserve: %w: %w", ErrUnavailable, ctx.Err())
	}
	select {
	case err := <-call.done:
		return err
	case <-ctx.Done():
		// The batch may still commit; the grain treats this like any failed
		// write and reloads, so it cannot act on a guess.
		return fmt.Errorf("reserve: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// writeReservations takes what has queued (at least one), writes it, answers
// each call, and goes again.
func (db *DB) writeReservations(b *reserveBatcher) {
	for {
		var first *reserveCall
		select {
		case first = <-b.calls:
		case <-b.quit:
			return
		}
		batch := []*reserveCall{first}
		seen := map[string]bool{first.r.AppointmentID: true}
		var later []*reserveCall
	drain:
		for len(batch) < maxReserveBatch {
			select {
			case c := <-b.calls:
				// One statement may not upsert a row twice: a second call for
				// the same appointment (a duplicate activation) waits a batch.
				if seen[c.r.AppointmentID] {
					later = append(later, c)
					continue
				}
				seen[c.r.AppointmentID] = true
				batch = append(batch, c)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs := db.reserveBatch(ctx, batch)
		cancel()
		for i, c := range batch {
			c.done <- errs[i]
		}
		for _, c := range later {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c.done <- db.reserveBatch(ctx, []*reserveCall{c})[0]
			cancel()
		}
	}
}

// reserveBatch writes calls in one statement and returns each one's result.
func (db *DB) reserveBatch(ctx context.Context, calls []*reserveCall) []error {
	n := len(calls)
	kinds, patients, appts, doctors := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	epochs := make([]int64, n)
	starts, ends, pending := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	idx := make([]int32, n)
	for i, c := range calls {
		kinds[i], patients[i], epochs[i], appts[i], doctors[i] = c.f.Kind, c.patient, c.f.Epoch, c.r.AppointmentID, c.r.DoctorID
		starts[i], ends[i], pending[i], idx[i] = c.r.Start, c.r.End, c.r.PendingUntil, int32(i)
	}
	errs := make([]error, n)
	rows, err := db.Pool.Query(ctx, `WITH req AS (
			SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[]::UUID[], $5::TEXT[]::UUID[], $6::TIMESTAMPTZ[], $7::TIMESTAMPTZ[], $8::TIMESTAMPTZ[], $9::INT[])
				AS r (kind, patient, epoch, appt, doctor, start_at, end_at, pending_until, i)
		), f AS (
			SELECT g.kind, g.id, g.epoch FROM grain_owner g JOIN req
				ON g.kind = req.kind AND g.id = req.patient AND g.epoch = req.epoch
			WHERE g.id = ANY($2::TEXT[])
			FOR SHARE OF g
		), ins AS (
			INSERT INTO patient_reservations (appointment_id, patient_id, doctor_id, start_at, end_at, pending_until)
			SELECT req.appt, req.patient::UUID, req.doctor, req.start_at, req.end_at, req.pending_until FROM req
			WHERE EXISTS (SELECT 1 FROM f WHERE f.kind = req.kind AND f.id = req.patient AND f.epoch = req.epoch)
			ON CONFLICT (appointment_id) DO UPDATE SET start_at = excluded.start_at, end_at = excluded.end_at,
				pending_until = excluded.pending_until
			WHERE patient_reservations.patient_id = excluded.patient_id
			RETURNING appointment_id
		)
		SELECT req.i,
			EXISTS (SELECT 1 FROM f WHERE f.kind = req.kind AND f.id = req.patient AND f.epoch = req.epoch),
			EXISTS (SELECT 1 FROM ins WHERE ins.appointment_id = req.appt)
		FROM req`,
		kinds, patients, epochs, appts, doctors, starts, ends, pending, idx)
	if err == nil {
		for rows.Next() {
			var i int32
			var fenced, written bool
			if err = rows.Scan(&i, &fenced, &written); err != nil {
				break
			}
			switch {
			case !fenced:
				errs[i] = ErrFenced
			case !written:
				errs[i] = fmt.Errorf("reserve: appointment %s belongs to another patient", calls[i].r.AppointmentID)
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		err = classify(fmt.Errorf("reserve: %w", err))
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}
