package persistence_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// putEvent writes an outbox row as a grain's transaction would.
func putEvent(t *testing.T, db *persistence.DB, aggregate string, version int64, ev proto.Message, at time.Time) {
	t.Helper()
	payload, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox (id, aggregate_kind, aggregate_id, aggregate_version, event_type, payload, created_at)
		VALUES ($1, 'Calendar', $2, $3, $4, $5, $6)`, uuid.New(), aggregate, version, string(proto.MessageName(ev)), payload, at); err != nil {
		t.Fatal(err)
	}
}

func doctorEvent(id, clinic, specialty string, version int64) *messages.DoctorChanged {
	return &messages.DoctorChanged{
		Doctor: &messages.DoctorRecord{Id: id, Specialty: specialty, ClinicId: clinic, TimeZone: "Europe/Chisinau", SlotMinutes: 15, Version: version},
		Availability: &messages.Availability{SlotMinutes: 15, Weekly: []*messages.WeeklyHours{
			{Weekday: "monday", Ranges: []*messages.TimeRange{{Start: "08:00", End: "12:00"}}}}},
	}
}

func appointmentEvent(id, doctor string, start time.Time, status messages.AppointmentStatus, version int64) *messages.AppointmentChanged {
	return &messages.AppointmentChanged{Appointment: &messages.AppointmentRecord{
		Id: id, DoctorId: doctor, Start: timestamppb.New(start), End: timestamppb.New(start.Add(15 * time.Minute)),
		Status: status, Version: version,
	}}
}

// relayAll relays until the outbox is empty and returns how many it delivered.
func relayAll(t *testing.T, db *persistence.DB, batch int) int {
	t.Helper()
	total := 0
	for {
		n, _, refused, err := db.RelayOutbox(context.Background(), batch, calendar.Project)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range refused {
			t.Errorf("refused: %v", e)
		}
		if total += n; n == 0 {
			return total
		}
	}
}

// TestRelayKeepsTheNewestVersion: events of one doctor and one appointment
// delivered in one batch, then again out of order, leave the view at the
// newest version; a cancelled appointment is not revived by its older event.
func TestRelayKeepsTheNewestVersion(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	doctor, clinic, appt := uuid.NewString(), uuid.NewString(), uuid.NewString()
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	t0 := time.Now().UTC()
	putEvent(t, db, doctor, 1, doctorEvent(doctor, clinic, "Cardiology", 1), t0)
	putEvent(t, db, doctor, 2, doctorEvent(doctor, clinic, "Neurology", 2), t0.Add(time.Millisecond))
	putEvent(t, db, doctor, 1, appointmentEvent(appt, doctor, start, messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, 2), t0.Add(2*time.Millisecond))
	putEvent(t, db, doctor, 1, appointmentEvent(appt, doctor, start, messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED, 3), t0.Add(3*time.Millisecond))
	if n := relayAll(t, db, 100); n != 4 {
		t.Fatalf("delivered %d events, want 4", n)
	}
	// Late duplicates of the older versions (another relay, a retry).
	putEvent(t, db, doctor, 1, doctorEvent(doctor, clinic, "Cardiology", 1), t0.Add(4*time.Millisecond))
	putEvent(t, db, doctor, 1, appointmentEvent(appt, doctor, start, messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, 2), t0.Add(5*time.Millisecond))
	if n := relayAll(t, db, 100); n != 2 {
		t.Fatalf("delivered %d late events, want 2", n)
	}

	if ds, err := db.FinderDoctors(ctx, "neurology", "", nil); err != nil || len(ds) != 1 || ds[0].Version != 2 || ds[0].Specialty != "Neurology" {
		t.Fatalf("neurology doctors = %+v, %v; want the doctor at version 2", ds, err)
	}
	if ds, err := db.FinderDoctors(ctx, "cardiology", "", nil); err != nil || len(ds) != 0 {
		t.Fatalf("cardiology doctors = %+v, %v; the doctor moved to neurology", ds, err)
	}
	if ds, err := db.FinderDoctors(ctx, "", clinic, nil); err != nil || len(ds) != 1 || len(ds[0].Availability.GetWeekly()) != 1 {
		t.Fatalf("clinic's doctors = %+v, %v; want one with Monday hours", ds, err)
	}
	busy, err := db.FinderBusy(ctx, []string{doctor}, start.Add(-time.Hour), start.Add(time.Hour))
	if err != nil || len(busy) != 0 {
		t.Fatalf("busy = %+v, %v; the cancellation (version 3) must win over the late booking (version 2)", busy, err)
	}
	var undelivered int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&undelivered); err != nil || undelivered != 0 {
		t.Fatalf("undelivered = %d, %v", undelivered, err)
	}
}

// TestConcurrentRelaysDeliverEachEventOnce: four relays draining one outbox
// together deliver every event exactly once (SKIP LOCKED splits the work).
func TestConcurrentRelaysDeliverEachEventOnce(t *testing.T) {
	db := pgtest.New(t)
	const events = 1200
	doctor := uuid.NewString()
	start := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	t0 := time.Now().UTC()
	for i := range events {
		putEvent(t, db, doctor, 1, appointmentEvent(uuid.NewString(), doctor, start.Add(time.Duration(i)*15*time.Minute),
			messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED, 2), t0.Add(time.Duration(i)*time.Microsecond))
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := relayAll(t, db, 50)
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != events {
		t.Fatalf("relays delivered %d events together, want %d (each once)", total, events)
	}
	busy, err := db.FinderBusy(context.Background(), []string{doctor}, start, start.Add(events*15*time.Minute))
	if err != nil || len(busy) != events {
		t.Fatalf("projected %d busy rows, %v; want %d", len(busy), err, events)
	}
}

// TestRelayDeliversUnprojectableEvents: a malformed event is reported and
// delivered, so it cannot block the events behind it.
func TestRelayDeliversUnprojectableEvents(t *testing.T) {
	db := pgtest.New(t)
	doctor := uuid.NewString()
	t0 := time.Now().UTC()
	putEvent(t, db, doctor, 1, &messages.DoctorChanged{}, t0)
	putEvent(t, db, doctor, 1, doctorEvent(doctor, uuid.NewString(), "Cardiology", 1), t0.Add(time.Millisecond))
	n, oldest, refused, err := db.RelayOutbox(context.Background(), 10, calendar.Project)
	if err != nil || n != 2 || len(refused) != 1 || !oldest.Equal(t0.Truncate(time.Microsecond)) {
		t.Fatalf("relay = %d, oldest %v, refused %v, %v; want 2 delivered, 1 refused, oldest %v", n, oldest, refused, err, t0)
	}
	if ds, err := db.FinderDoctors(context.Background(), "cardiology", "", nil); err != nil || len(ds) != 1 {
		t.Fatalf("doctors = %+v, %v; the good event behind the bad one must be projected", ds, err)
	}
}
