package persistence_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func hold(doctor string, start time.Time, minutes int) persistence.NewAppointment {
	end := start.Add(time.Duration(minutes) * time.Minute)
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := &messages.AppointmentRecord{Id: uuid.NewString(), DoctorId: doctor, PatientId: uuid.NewString(),
		Start: timestamppb.New(start), End: timestamppb.New(end), Status: messages.AppointmentStatus_APPOINTMENT_STATUS_HELD,
		HoldExpiresAt: timestamppb.New(now.Add(time.Minute)), Reason: "checkup", BookedBy: "desk-1", Version: 1,
		CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now)}
	var cells []time.Time
	for c := start; c.Before(end); c = c.Add(5 * time.Minute) {
		cells = append(cells, c)
	}
	return persistence.NewAppointment{Record: a, Fingerprint: []byte("fp"), Cells: cells}
}

func TestCalendarBatchHoldsConfirmsAndClaims(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	doctor, f := pgtest.Doctor(t, db)
	start := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Hour)

	a, b := hold(doctor, start, 30), hold(doctor, start.Add(time.Hour), 15)
	taken, err := db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{a, b},
		Events: []*messages.AppointmentChanged{{Change: messages.AppointmentChange_APPOINTMENT_CHANGE_HELD, Appointment: a.Record}}})
	if err != nil || len(taken) != 0 {
		t.Fatalf("WriteCalendar(holds) = %v, %v", taken, err)
	}
	claims, err := db.DoctorClaims(ctx, doctor)
	if err != nil || len(claims) != 9 {
		t.Fatalf("claims = %d, %v; want 6 + 3 cells", len(claims), err)
	}

	// The same id again claims nothing and is reported as taken.
	again := hold(doctor, start.Add(2*time.Hour), 15)
	again.Record.Id = a.Record.Id
	taken, err = db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{again}})
	if err != nil || len(taken) != 1 || taken[0] != a.Record.Id {
		t.Fatalf("WriteCalendar(taken id) = %v, %v; want the id reported", taken, err)
	}
	if claims, _ := db.DoctorClaims(ctx, doctor); len(claims) != 9 {
		t.Fatalf("claims after a taken id = %d, want 9", len(claims))
	}

	// A cell held by another appointment is refused by the database, and
	// nothing of that batch is written.
	clash := hold(doctor, start.Add(10*time.Minute), 15)
	confirmed := proto.Clone(b.Record).(*messages.AppointmentRecord)
	confirmed.Status, confirmed.HoldExpiresAt, confirmed.Version = messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, nil, 2
	_, err = db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{clash},
		Updates: []persistence.AppointmentUpdate{{Record: confirmed, PrevVersion: 1}}})
	if !errors.Is(err, persistence.ErrClaimTaken) {
		t.Fatalf("WriteCalendar(overlapping claim) = %v, want ErrClaimTaken", err)
	}
	if got, _, err := db.GetAppointment(ctx, b.Record.Id); err != nil || got.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_HELD {
		t.Fatalf("after refused batch b = %v, %v; want still held", got, err)
	}

	// Drop a (its saga failed) and confirm b; a new activation loads only live ones.
	var unclaims []persistence.Claim
	for _, c := range a.Cells {
		unclaims = append(unclaims, persistence.Claim{Cell: c, AppointmentID: a.Record.Id})
	}
	_, err = db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Unclaims: unclaims, Drops: []string{a.Record.Id},
		Updates: []persistence.AppointmentUpdate{{Record: confirmed, PrevVersion: 1}}})
	if err != nil {
		t.Fatalf("WriteCalendar(release, confirm) = %v", err)
	}
	sd, _, err := db.LoadDoctor(ctx, doctor, "node-b", time.Now())
	if err != nil || len(sd.Appointments) != 1 || sd.Appointments[0].Record.Id != b.Record.Id || string(sd.Appointments[0].Fingerprint) != "fp" ||
		sd.Appointments[0].Record.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED || sd.Appointments[0].Record.HoldExpiresAt != nil {
		t.Fatalf("LoadDoctor appointments = %v, %v; want only b, booked", sd, err)
	}
	if claims, _ := db.DoctorClaims(ctx, doctor); len(claims) != 3 {
		t.Fatalf("claims after release = %d, want 3", len(claims))
	}
	if _, _, err := db.GetAppointment(ctx, a.Record.Id); !errors.Is(err, persistence.ErrNoAppointment) {
		t.Fatalf("dropped hold = %v, want ErrNoAppointment", err)
	}
	// node-b claimed the calendar: the old fence writes nothing.
	if _, err := db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{hold(doctor, start.Add(3*time.Hour), 5)}}); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("stale fence write = %v, want ErrFenced", err)
	}
	if evs, _ := db.OutboxEvents(ctx, persistence.CalendarKind, doctor); len(evs) != 2 || evs[1].EventType != "caregrid.v1.AppointmentChanged" {
		t.Fatalf("outbox = %+v, want doctor created then one appointment event", evs)
	}
}

// A booking whose patient already accepted is inserted booked with its
// event in the statement that claims its cells; if its id is taken, none of
// the three is written. Updates in one batch each pass their version check.
func TestCalendarBatchInsertsBookingsWithTheirEvents(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	doctor, f := pgtest.Doctor(t, db)
	start := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Hour)
	booking := func(at time.Time) persistence.NewAppointment {
		n := hold(doctor, at, 15)
		n.Record.Status, n.Record.HoldExpiresAt, n.Record.Version = messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, nil, 2
		n.Record.UpdatedAt = timestamppb.New(n.Record.CreatedAt.AsTime().Add(time.Second))
		n.Event = &messages.AppointmentChanged{Change: messages.AppointmentChange_APPOINTMENT_CHANGE_BOOKED, Appointment: n.Record}
		return n
	}
	events := func() int {
		evs, err := db.OutboxEvents(ctx, persistence.CalendarKind, doctor)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) - 1 // the doctor's creation
	}
	a, b, h := booking(start), booking(start.Add(time.Hour)), hold(doctor, start.Add(2*time.Hour), 15)
	taken, err := db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{a, h, b}})
	if err != nil || len(taken) != 0 {
		t.Fatalf("WriteCalendar(bookings and a hold) = %v, %v", taken, err)
	}
	got, _, err := db.GetAppointment(ctx, a.Record.Id)
	if err != nil || got.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED || got.Version != 2 || got.HoldExpiresAt != nil ||
		!got.UpdatedAt.AsTime().Equal(a.Record.UpdatedAt.AsTime()) {
		t.Fatalf("booking a stored as %v, %v", got, err)
	}
	if n := events(); n != 2 {
		t.Fatalf("events = %d, want one per booking and none for the hold", n)
	}
	if claims, _ := db.DoctorClaims(ctx, doctor); len(claims) != 9 {
		t.Fatalf("claims = %d, want 3 cells each", len(claims))
	}

	// A booking whose id is taken writes no row, no claim and no event.
	again := booking(start.Add(3 * time.Hour))
	again.Record.Id = a.Record.Id
	again.Event.Appointment = again.Record
	if taken, err := db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{again}}); err != nil ||
		len(taken) != 1 || taken[0] != a.Record.Id {
		t.Fatalf("WriteCalendar(taken id) = %v, %v; want the id reported", taken, err)
	}
	if claims, _ := db.DoctorClaims(ctx, doctor); len(claims) != 9 || events() != 2 {
		t.Fatalf("after a taken id: %d claims, %d events; want 9 and 2", len(claims), events())
	}

	// Two updates in one batch; one at a stale version fails the batch whole.
	next := func(n persistence.NewAppointment, v int64) *messages.AppointmentRecord {
		r := proto.Clone(n.Record).(*messages.AppointmentRecord)
		r.Status, r.HoldExpiresAt, r.Version = messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN, nil, v+1
		return r
	}
	_, err = db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Updates: []persistence.AppointmentUpdate{
		{Record: next(a, 2), PrevVersion: 2}, {Record: next(b, 1), PrevVersion: 1}}})
	if !errors.Is(err, persistence.ErrStale) {
		t.Fatalf("WriteCalendar(one stale update) = %v, want ErrStale", err)
	}
	if got, _, _ := db.GetAppointment(ctx, a.Record.Id); got.Version != 2 {
		t.Fatalf("a stale batch changed a to version %d", got.Version)
	}
	_, err = db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Updates: []persistence.AppointmentUpdate{
		{Record: next(a, 2), PrevVersion: 2}, {Record: next(b, 2), PrevVersion: 2}, {Record: func() *messages.AppointmentRecord {
			r := proto.Clone(h.Record).(*messages.AppointmentRecord)
			r.Status, r.HoldExpiresAt, r.Version = messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, nil, 2
			return r
		}(), PrevVersion: 1}}})
	if err != nil {
		t.Fatalf("WriteCalendar(three updates) = %v", err)
	}
	for _, n := range []persistence.NewAppointment{a, b, h} {
		if got, _, _ := db.GetAppointment(ctx, n.Record.Id); got.Version != n.Record.Version+1 {
			t.Fatalf("%s at version %d after its update, want %d", n.Record.Id, got.Version, n.Record.Version+1)
		}
	}
}

func TestPatientReservationsJoinTheirAppointments(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	doctor, df := pgtest.Doctor(t, db)
	p := newPatient()
	pf, _, err := db.RegisterPatient(ctx, "node-a", testMaster(t), p, nil, &messages.PatientRegistered{Patient: p})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)
	h := hold(doctor, start, 20)
	h.Record.PatientId = p.Id
	if _, err := db.WriteCalendar(ctx, df, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{h}}); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Minute)
	for _, r := range []persistence.Reservation{
		{AppointmentID: h.Record.Id, DoctorID: doctor, Start: start, End: start.Add(20 * time.Minute), PendingUntil: until},
		{AppointmentID: uuid.NewString(), DoctorID: doctor, Start: start.Add(time.Hour), End: start.Add(80 * time.Minute), PendingUntil: until},
	} {
		if err := db.ReservePatient(ctx, pf, p.Id, r); err != nil {
			t.Fatalf("ReservePatient = %v", err)
		}
	}
	rs, err := db.PatientReservations(ctx, p.Id, time.Now())
	if err != nil || len(rs) != 2 {
		t.Fatalf("PatientReservations = %v, %v", rs, err)
	}
	for _, r := range rs {
		if (r.AppointmentID == h.Record.Id) != (r.Appointment != nil) {
			t.Fatalf("reservation %s joined %v; only the written appointment should join", r.AppointmentID, r.Appointment)
		}
		if r.Appointment != nil && r.Appointment.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_HELD {
			t.Fatalf("joined status = %v", r.Appointment.Status)
		}
	}
	if _, _, err := db.LoadPatient(ctx, p.Id, "node-b"); err != nil {
		t.Fatal(err)
	}
	if err := db.ReservePatient(ctx, pf, p.Id, rs[0]); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("stale patient fence = %v, want ErrFenced", err)
	}
}

// TestWhatLetsADoctorReadARecord: DoctorTreats grants a doctor access for
// an appointment someone else booked or the desk checked in, within the
// window around it, and for nothing the doctor did alone.
func TestWhatLetsADoctorReadARecord(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	doctor, f := pgtest.Doctor(t, db)
	now := time.Now().UTC().Truncate(time.Microsecond)
	w := persistence.CareWindow{Before: 7 * 24 * time.Hour, After: 90 * 24 * time.Hour}
	status := func(s messages.AppointmentStatus) func(*messages.AppointmentRecord) {
		return func(a *messages.AppointmentRecord) { a.Status = s }
	}
	by := func(booked, checkedIn string) func(*messages.AppointmentRecord) {
		return func(a *messages.AppointmentRecord) { a.BookedBy, a.CheckedInBy = booked, checkedIn }
	}
	booked, checked := messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN
	for i, tt := range []struct {
		name    string
		start   time.Duration // from now
		changes []func(*messages.AppointmentRecord)
		grants  bool
	}{
		{"booked by the desk, in two days", 48 * time.Hour, []func(*messages.AppointmentRecord){status(booked)}, true},
		{"booked by the desk, a month ago", -30 * 24 * time.Hour, []func(*messages.AppointmentRecord){status(booked)}, true},
		{"booked by the desk, in ten years", 10 * 365 * 24 * time.Hour, []func(*messages.AppointmentRecord){status(booked)}, false},
		{"booked by the desk, a year ago", -365 * 24 * time.Hour, []func(*messages.AppointmentRecord){status(booked)}, false},
		{"booked by the doctor himself", time.Hour, []func(*messages.AppointmentRecord){status(booked), by(doctor, "")}, false},
		{"booked and checked in by the doctor himself", time.Hour, []func(*messages.AppointmentRecord){status(checked), by(doctor, doctor)}, false},
		{"booked by the doctor, checked in by the desk", time.Hour, []func(*messages.AppointmentRecord){status(checked), by(doctor, "desk-2")}, true},
		{"cancelled", time.Hour, []func(*messages.AppointmentRecord){status(messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED)}, false},
		{"missed (no-show)", -time.Hour, []func(*messages.AppointmentRecord){status(messages.AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW)}, false},
		{"held, not yet booked", time.Hour, nil, false},
	} {
		// Each its own slot (20 minutes apart) and its own patient.
		a := hold(doctor, now.Add(tt.start+time.Duration(i)*20*time.Minute).Truncate(5*time.Minute), 15)
		for _, change := range tt.changes {
			change(a.Record)
		}
		a.Record.HoldExpiresAt = nil
		if _, err := db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor, Inserts: []persistence.NewAppointment{a}}); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		until, err := db.DoctorTreats(ctx, doctor, a.Record.PatientId, now, w)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := now.Before(until); got != tt.grants {
			t.Errorf("%s: grants = %v (until %v), want %v", tt.name, got, until, tt.grants)
		}
		if tt.grants && !until.Equal(a.Record.Start.AsTime().Add(w.After)) {
			t.Errorf("%s: until %v, want the start + %v", tt.name, until, w.After)
		}
		// What the patient is shown is what is enforced.
		grants, err := db.AccessGrants(ctx, a.Record.PatientId, now, w)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if shown := len(grants) == 1 && grants[0].DoctorID == doctor && grants[0].Reason == "appointment" &&
			grants[0].AppointmentID == a.Record.Id && grants[0].Until.Equal(until); shown != tt.grants || len(grants) > 1 {
			t.Errorf("%s: access grants %+v, want the doctor listed: %v", tt.name, grants, tt.grants)
		}
	}
}

// Many calendars' batches go in one transaction, each through its own
// fence: a fenced batch writes nothing and hears ErrFenced while the
// others commit with their audit events; a batch the database refuses (a
// claim taken) fails alone, the others of its group still commit.
func TestCalendarBatchesOfManyDoctorsCommitTogether(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	start := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Hour)
	var doctors []string
	var batches []persistence.FencedCalendarBatch
	for i := range 4 {
		doctor, f := pgtest.Doctor(t, db)
		doctors = append(doctors, doctor)
		h := hold(doctor, start, 15)
		batches = append(batches, persistence.FencedCalendarBatch{Fence: f, Batch: &persistence.CalendarBatch{DoctorID: doctor,
			Inserts: []persistence.NewAppointment{h},
			Audit: []persistence.PendingAudit{{Shard: 7, Event: &messages.AuditEvent{OccurredAt: timestamppb.Now(),
				Action: messages.AuditAction_AUDIT_ACTION_CREATE.Name(), ResourceId: h.Record.Id, Outcome: messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS}}}}})
		if i == 2 { // another activation of doctor 2 claimed it
			if _, err := db.Claim(ctx, persistence.CalendarKind, doctor, "node-b"); err != nil {
				t.Fatal(err)
			}
		}
	}
	res := db.WriteCalendars(ctx, batches)
	for i, r := range res {
		want := error(nil)
		if i == 2 {
			want = persistence.ErrFenced
		}
		if !errors.Is(r.Err, want) || len(r.Taken) != 0 {
			t.Fatalf("batch %d = %+v, want %v", i, r, want)
		}
		claims, _ := db.DoctorClaims(ctx, doctors[i])
		if wantClaims := map[bool]int{true: 0, false: 3}[i == 2]; len(claims) != wantClaims {
			t.Fatalf("doctor %d has %d claims, want %d", i, len(claims), wantClaims)
		}
	}
	var audited int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending WHERE shard = 7`).Scan(&audited); err != nil || audited != 3 {
		t.Fatalf("audit events written = %d, %v; want 3 (the fenced batch's not)", audited, err)
	}

	// Doctor 0's next batch claims a cell it already holds: it alone fails.
	clash := persistence.FencedCalendarBatch{Fence: batches[0].Fence, Batch: &persistence.CalendarBatch{DoctorID: doctors[0],
		Inserts: []persistence.NewAppointment{hold(doctors[0], start.Add(5*time.Minute), 15)}}}
	fine := persistence.FencedCalendarBatch{Fence: batches[1].Fence, Batch: &persistence.CalendarBatch{DoctorID: doctors[1],
		Inserts: []persistence.NewAppointment{hold(doctors[1], start.Add(time.Hour), 15)}}}
	res = db.WriteCalendars(ctx, []persistence.FencedCalendarBatch{clash, fine})
	if !errors.Is(res[0].Err, persistence.ErrClaimTaken) || res[1].Err != nil {
		t.Fatalf("a clash beside a fine batch = %+v", res)
	}
	if claims, _ := db.DoctorClaims(ctx, doctors[1]); len(claims) != 6 {
		t.Fatalf("doctor 1 has %d claims after its second batch, want 6", len(claims))
	}
	if claims, _ := db.DoctorClaims(ctx, doctors[0]); len(claims) != 3 {
		t.Fatalf("doctor 0 has %d claims after its refused batch, want 3", len(claims))
	}

	// Doctor 3's owner row is locked (a new activation claiming it): the
	// group commits without waiting for it, and doctor 3's batch is
	// written once the lock goes.
	lock, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `SELECT 1 FROM grain_owner WHERE kind = $1 AND id = $2 FOR UPDATE`, persistence.CalendarKind, doctors[3]); err != nil {
		t.Fatal(err)
	}
	waiting := persistence.FencedCalendarBatch{Fence: batches[3].Fence, Batch: &persistence.CalendarBatch{DoctorID: doctors[3],
		Inserts: []persistence.NewAppointment{hold(doctors[3], start.Add(2*time.Hour), 15)}}}
	other := persistence.FencedCalendarBatch{Fence: batches[1].Fence, Batch: &persistence.CalendarBatch{DoctorID: doctors[1],
		Inserts: []persistence.NewAppointment{hold(doctors[1], start.Add(2*time.Hour), 15)}}}
	done := make(chan []persistence.CalendarResult, 1)
	go func() { done <- db.WriteCalendars(ctx, []persistence.FencedCalendarBatch{waiting, other}) }()
	await.Until(t, "doctor 1's batch, beside a locked one", 10*time.Second, func() bool {
		claims, _ := db.DoctorClaims(ctx, doctors[1])
		return len(claims) == 9
	})
	if claims, _ := db.DoctorClaims(ctx, doctors[3]); len(claims) != 3 {
		t.Fatalf("doctor 3 has %d claims while its owner row is locked, want 3", len(claims))
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("after the lock: %+v", res)
	}
	if claims, _ := db.DoctorClaims(ctx, doctors[3]); len(claims) != 6 {
		t.Fatalf("doctor 3 has %d claims after the lock went, want 6", len(claims))
	}
}

// A group that chains its own audit events (the calendar committer's
// chain, audit.Writer) writes them as chained rows in its transaction,
// none pending; a chain claimed away from the writer fails the group,
// whose batches are then written alone with their events pending, and the
// writer reads its head again before it goes on: the chain stays whole.
func TestACalendarGroupChainsItsAuditEventsInItsTransaction(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	w, err := audit.OpenWriter(ctx, db, "node-a", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Hour)
	var doctors []string
	var fences []persistence.Fence
	for range 3 {
		d, f := pgtest.Doctor(t, db)
		doctors, fences = append(doctors, d), append(fences, f)
	}
	batches := func(at time.Time) []persistence.FencedCalendarBatch {
		var out []persistence.FencedCalendarBatch
		for i, d := range doctors {
			h := hold(d, at, 15)
			out = append(out, persistence.FencedCalendarBatch{Fence: fences[i], Batch: &persistence.CalendarBatch{DoctorID: d,
				Inserts: []persistence.NewAppointment{h},
				Audit: []persistence.PendingAudit{{Shard: w.Shard(), Event: &messages.AuditEvent{OccurredAt: timestamppb.Now(),
					Action: messages.AuditAction_AUDIT_ACTION_CREATE.Name(), ResourceId: h.Record.Id, Outcome: messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS}}}}})
		}
		return out
	}
	write := func(at time.Time) persistence.CalendarGroup {
		chained, err := w.Begin()
		if err != nil {
			t.Fatal(err)
		}
		g := db.WriteCalendarsChained(ctx, batches(at), chained)
		w.Done(g.Chained, g.ChainHeld)
		return g
	}
	count := func(sql string) int {
		var n int
		if err := db.Pool.QueryRow(ctx, sql, w.Shard()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	g := write(start)
	for i, r := range g.Results {
		if r.Err != nil || r.Pending {
			t.Fatalf("batch %d = %+v, want written with its events chained", i, r)
		}
	}
	if len(g.Chained) != 3 || !g.ChainHeld {
		t.Fatalf("chained %d rows (held %v), want 3", len(g.Chained), g.ChainHeld)
	}
	if n := count(`SELECT count(*) FROM audit_events WHERE shard = $1`); n != 3 {
		t.Fatalf("%d chained rows stored, want 3", n)
	}
	if n := count(`SELECT count(*) FROM audit_pending WHERE shard = $1`); n != 0 {
		t.Fatalf("%d events left pending, want none", n)
	}
	g = write(start.Add(time.Hour)) // continues the head it holds
	if len(g.Chained) != 3 || g.Chained[0].Seq != 4 {
		t.Fatalf("the second group chained %+v, want seqs 4-6", g.Chained)
	}

	// Another process claims the chain: the group's append is fenced, the
	// whole transaction with it; each batch is written alone, its event
	// pending for a member's chain.
	if _, err := db.ClaimAuditChain(ctx, w.Shard(), "node-b"); err != nil {
		t.Fatal(err)
	}
	g = write(start.Add(2 * time.Hour))
	for i, r := range g.Results {
		if r.Err != nil || !r.Pending {
			t.Fatalf("batch %d after the chain was claimed away = %+v, want written alone, pending", i, r)
		}
	}
	if g.ChainHeld {
		t.Fatal("the writer kept its head after a failed group")
	}
	if n := count(`SELECT count(*) FROM audit_pending WHERE shard = $1`); n != 3 {
		t.Fatalf("%d events pending, want 3", n)
	}
	// The writer claims the chain back and reads its head: the next group
	// continues it.
	g = write(start.Add(3 * time.Hour))
	if len(g.Chained) != 3 || g.Chained[0].Seq != 7 {
		t.Fatalf("after the claim the group chained %+v, want seqs 7-9", g.Chained)
	}
	if _, _, err := audit.VerifyTrail(ctx, db, func(int32, int64) {}); err != nil {
		t.Fatalf("the trail does not verify: %v", err)
	}
}
