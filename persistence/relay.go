package persistence

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/jackc/pgx/v5"
)

// Projection is what a batch of outbox events changes in the read models.
// A Projector fills it; RelayOutbox writes it in the transaction that
// deletes the events from the outbox, so a read model never misses or
// half-applies one.
type Projection struct {
	Doctors  []DoctorView
	Busy     []BusyView
	Patients []PatientView
	// Notices are events for the notifier (NotificationEvent.Key: the
	// outbox event's id).
	Notices []NotificationEvent
}

// DoctorView is a doctor as the slot finder sees them.
type DoctorView struct {
	DoctorID     string
	Specialty    string
	ClinicID     string
	TimeZone     string
	SlotMinutes  int32
	Availability *messages.Availability
	Version      int64
}

// BusyView is the time one appointment takes (or took) from its doctor.
type BusyView struct {
	AppointmentID string
	DoctorID      string
	Start, End    time.Time
	Occupied      bool
	Version       int64
}

// Projector adds what one event changes to p. It must be pure: the
// transaction it runs in may be retried. An error means the event can never
// be projected (malformed); the relay logs it and delivers it anyway.
type Projector func(ev OutboxEvent, p *Projection) error

// RelayOutbox delivers up to limit events, oldest first, in one
// transaction: it locks them (SKIP LOCKED, so relays on other nodes take
// other events at the same time), writes what project makes of them, and
// deletes them from the outbox. It returns how many it delivered, the creation time
// of the oldest, and the events project refused.
func (db *DB) RelayOutbox(ctx context.Context, limit int, project Projector) (n int, oldest time.Time, refused []error, err error) {
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		n, oldest, refused = 0, time.Time{}, nil
		rows, err := tx.Query(ctx, `SELECT id::TEXT, aggregate_kind, aggregate_id, aggregate_version, event_type, payload, created_at
			FROM outbox ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		var (
			ids []string
			p   Projection
		)
		for rows.Next() {
			var ev OutboxEvent
			var at time.Time
			if err := rows.Scan(&ev.ID, &ev.AggregateKind, &ev.AggregateID, &ev.AggregateVersion, &ev.EventType, &ev.Payload, &at); err != nil {
				rows.Close()
				return err
			}
			if len(ids) == 0 {
				oldest = at
			}
			ids = append(ids, ev.ID)
			if err := project(ev, &p); err != nil {
				refused = append(refused, fmt.Errorf("outbox event %s (%s): %w", ev.ID, ev.EventType, err))
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		var q pgx.Batch
		if err := queueDoctorViews(&q, p.Doctors); err != nil {
			return err
		}
		queueBusyViews(&q, p.Busy)
		queuePatientViews(&q, p.Patients)
		queueNotificationEvents(&q, p.Notices)
		q.Queue(`DELETE FROM outbox WHERE id = ANY($1::TEXT[]::UUID[])`, ids)
		if err := tx.SendBatch(ctx, &q).Close(); err != nil {
			return err
		}
		n = len(ids)
		return nil
	})
	return n, oldest, refused, classify(err)
}

// latest keeps one view per key, the newest: one INSERT ... ON CONFLICT DO
// UPDATE may not touch a row twice.
func latest[V any](vs []V, key func(V) string, version func(V) int64) []V {
	sort.SliceStable(vs, func(i, j int) bool {
		if ki, kj := key(vs[i]), key(vs[j]); ki != kj {
			return ki < kj
		}
		return version(vs[i]) > version(vs[j])
	})
	out := vs[:0:0]
	for i, v := range vs {
		if i == 0 || key(v) != key(vs[i-1]) {
			out = append(out, v)
		}
	}
	return out
}

func queueDoctorViews(q *pgx.Batch, vs []DoctorView) error {
	if len(vs) == 0 {
		return nil
	}
	vs = latest(vs, func(v DoctorView) string { return v.DoctorID }, func(v DoctorView) int64 { return v.Version })
	n := len(vs)
	ids, specialties, keys, clinics, zones := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	slots, hours, versions := make([]int32, n), make([]string, n), make([]int64, n)
	for i, v := range vs {
		avail, err := availabilityJSON.Marshal(v.Availability)
		if err != nil {
			return err
		}
		ids[i], specialties[i], keys[i], clinics[i], zones[i] = v.DoctorID, v.Specialty, SpecialtyKey(v.Specialty), v.ClinicID, v.TimeZone
		slots[i], hours[i], versions[i] = v.SlotMinutes, string(avail), v.Version
	}
	// Availability travels as text: CockroachDB before 23.2 has no JSONB arrays.
	q.Queue(`INSERT INTO slot_finder_doctors (doctor_id, specialty, specialty_key, clinic_id, time_zone, slot_minutes, availability, version)
		SELECT u.id, u.specialty, u.key, u.clinic, u.zone, u.slot, u.hours::JSONB, u.version
		FROM unnest($1::TEXT[]::UUID[], $2::TEXT[], $3::TEXT[], $4::TEXT[]::UUID[], $5::TEXT[], $6::INT[], $7::TEXT[], $8::BIGINT[])
			AS u (id, specialty, key, clinic, zone, slot, hours, version)
		ON CONFLICT (doctor_id) DO UPDATE SET specialty = excluded.specialty, specialty_key = excluded.specialty_key,
			clinic_id = excluded.clinic_id, time_zone = excluded.time_zone, slot_minutes = excluded.slot_minutes,
			availability = excluded.availability, version = excluded.version
		WHERE slot_finder_doctors.version < excluded.version`,
		ids, specialties, keys, clinics, zones, slots, hours, versions)
	return nil
}

func queueBusyViews(q *pgx.Batch, vs []BusyView) {
	if len(vs) == 0 {
		return
	}
	vs = latest(vs, func(v BusyView) string { return v.AppointmentID }, func(v BusyView) int64 { return v.Version })
	n := len(vs)
	ids, doctors := make([]string, n), make([]string, n)
	starts, ends := make([]time.Time, n), make([]time.Time, n)
	occupied, versions := make([]bool, n), make([]int64, n)
	for i, v := range vs {
		ids[i], doctors[i], starts[i], ends[i], occupied[i], versions[i] = v.AppointmentID, v.DoctorID, v.Start, v.End, v.Occupied, v.Version
	}
	q.Queue(`INSERT INTO slot_finder_busy (appointment_id, doctor_id, start_at, end_at, occupied, version)
		SELECT * FROM unnest($1::TEXT[]::UUID[], $2::TEXT[]::UUID[], $3::TIMESTAMPTZ[], $4::TIMESTAMPTZ[], $5::BOOL[], $6::BIGINT[])
		ON CONFLICT (appointment_id) DO UPDATE SET doctor_id = excluded.doctor_id, start_at = excluded.start_at,
			end_at = excluded.end_at, occupied = excluded.occupied, version = excluded.version
		WHERE slot_finder_busy.version < excluded.version`,
		ids, doctors, starts, ends, occupied, versions)
}

// Relay runs RelayOutbox in a loop: at once again while batches come back
// full, every Idle otherwise. Every member runs one; SKIP LOCKED lets them
// share the work, and versioned upserts make a repeat harmless.
type Relay struct {
	DB      *DB
	Project Projector
	Batch   int           // events per transaction; default 500
	Idle    time.Duration // pause when caught up; default 200ms
	Logger  *slog.Logger

	delivered atomic.Uint64
	refused   atomic.Uint64
	lagNanos  atomic.Int64
}

// Delivered is how many events this relay has delivered.
func (r *Relay) Delivered() uint64 { return r.delivered.Load() }

// Refused is how many events could not be projected (and were delivered anyway).
func (r *Relay) Refused() uint64 { return r.refused.Load() }

// Lag is the age of the oldest event in the latest batch when it was
// taken: how far the read models trail the grains (0 when caught up).
func (r *Relay) Lag() time.Duration { return time.Duration(r.lagNanos.Load()) }

// Run relays until ctx ends. A failing database is retried with backoff
// up to 5 s; nothing is lost, since events stay in the outbox until delivered.
func (r *Relay) Run(ctx context.Context) {
	batch, idle := r.Batch, r.Idle
	if batch <= 0 {
		batch = 500
	}
	if idle <= 0 {
		idle = 200 * time.Millisecond
	}
	logger := r.Logger
	if logger == nil {
		logger = slog.Default()
	}
	backoff := idle
	for {
		n, oldest, refused, err := r.DB.RelayOutbox(ctx, batch, r.Project)
		wait := idle
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			logger.Warn("outbox relay failed; retrying", "err", err, "in", backoff)
			wait, backoff = backoff, min(2*backoff, 5*time.Second)
		default:
			backoff = idle
			r.delivered.Add(uint64(n))
			for _, e := range refused {
				r.refused.Add(1)
				logger.Error("outbox event cannot be projected; delivered without effect", "err", e)
			}
			if n == 0 {
				r.lagNanos.Store(0)
			} else {
				r.lagNanos.Store(int64(time.Since(oldest)))
			}
			if n == batch {
				wait = 0
			}
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}
