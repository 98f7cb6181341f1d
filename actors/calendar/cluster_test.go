// Booking through real members (real remoting on loopback) in one process,
// against real PostgreSQL, under the race detector (see
// actors/patient/cluster_test.go).

package calendar_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/proof/prooftest"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/audit/audittest"
	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/internal/memstat"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	admin = prooftest.Sign(&messages.Caller{Subject: "admin-1", Role: messages.Role_ROLE_ADMIN})
	desk  = prooftest.Sign(&messages.Caller{Subject: "desk-1", Role: messages.Role_ROLE_RECEPTIONIST, PurposeOfUse: "TREAT"})
)

// holdTTL is the production default: the patient call's timeout is a
// third of it, and a shorter one left too little for 500 bookings at once
// on a loaded machine. The hold-expiry test moves the grains' clock
// instead of waiting it out.
const holdTTL = calendar.DefaultHoldTTL

// stats are the calendar grains' counters and clock the grains' clock
// (the calendar's and the patient's),
// shared like proto.actor's factories (one per kind per process).
var (
	stats = &calendar.Stats{}
	clock = &shiftClock{}
)

// shiftClock is the wall clock moved by an offset a test sets.
type shiftClock struct{ offset atomic.Int64 }

func (c *shiftClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Shift moves the clock by d from the wall clock until the test ends.
func (c *shiftClock) Shift(t *testing.T, d time.Duration) {
	c.offset.Store(int64(d))
	t.Cleanup(func() { c.offset.Store(0) })
}

// checker proves the callers of this process's grains; prooftest.Sign
// makes the tokens it accepts.
var checker = prooftest.Checker()

func TestMain(m *testing.M) { prooftest.Main(m) }

func memberConfig(t testing.TB, db *persistence.DB, name string, agent *cluster.Agent) cluster.Config {
	return memberConfigIdle(t, db, name, agent, time.Minute)
}

// memberConfigIdle is memberConfig whose grains passivate after idle.
func memberConfigIdle(t testing.TB, db *persistence.DB, name string, agent *cluster.Agent, idle time.Duration) cluster.Config {
	rec := audit.Recorder{Chain: audittest.OpenChain(t, db, name), Timeout: 5 * time.Second}
	// The members' calendars write through a committer that chains their
	// audit events itself, as on a node.
	commits := calendar.NewCommitter(db, 0, func() error { return rec.Drain(nil) })
	t.Cleanup(commits.Close)
	w, err := audit.OpenWriter(context.Background(), db, name, "calendar-test")
	if err != nil {
		t.Fatal(err)
	}
	commits.UseChain(w)
	return cluster.Config{
		Name: name, Agent: agent, TLS: prooftest.TLS(t),
		Kinds: []*actorcluster.Kind{
			patient.Kind(patient.Deps{DB: db, Master: pgtest.MasterKey(t), Proof: checker, Audit: rec, Now: clock.Now}, idle),
			calendar.Kind(calendar.Deps{DB: db, Proof: checker, Audit: rec, HoldTTL: holdTTL, Stats: stats, Now: clock.Now, Commits: commits}, idle),
		},
	}
}

func stopAll(nodes []*cluster.Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop(true) }()
	}
	wg.Wait()
}

func startGroup(t testing.TB, cfgs ...cluster.Config) []*cluster.Node {
	t.Helper()
	nodes, err := cluster.StartGroup(context.Background(), cfgs...)
	if err != nil {
		t.Fatalf("start members: %v", err)
	}
	t.Cleanup(func() { stopAll(nodes) })
	return nodes
}

func waitMembers(t *testing.T, nodes []*cluster.Node, want int) {
	t.Helper()
	for i, n := range nodes {
		await.Until(t, fmt.Sprintf("member %d to see %d members", i, want), 30*time.Second, func() bool { return n.Members() == want })
	}
}

// newDoctor stores a clinic and creates a doctor who works around the clock
// in 15-minute slots, so that tests can book any future time.
func newDoctor(t testing.TB, db *persistence.DB, c *actorcluster.Cluster) string {
	t.Helper()
	ctx := context.Background()
	now := timestamppb.Now()
	clinic := &messages.ClinicRecord{Id: uuid.NewString(), Name: "Clinic", TimeZone: "Europe/Chisinau", Version: 1, CreatedAt: now, UpdatedAt: now}
	if _, err := db.CreateClinic(ctx, "test", clinic, nil, &messages.ClinicCreated{Clinic: clinic}); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	cal := messages.GetCalendarGrainClient(c, id)
	_, err := cal.CreateDoctor(&messages.CreateDoctorRequest{Caller: admin, Doctor: &messages.DoctorRecord{
		GivenName: "Ana", FamilyName: "Rusu", Specialty: "cardiology", ClinicId: clinic.Id,
		TimeZone: "Europe/Chisinau", SlotMinutes: 15}}, cluster.CallOptions(0)...)
	if err != nil {
		t.Fatalf("create doctor: %v", err)
	}
	hours := &messages.Availability{SlotMinutes: 15}
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"} {
		hours.Weekly = append(hours.Weekly, &messages.WeeklyHours{Weekday: d, Ranges: []*messages.TimeRange{{Start: "00:00", End: "24:00"}}})
	}
	if _, err := cal.SetAvailability(&messages.SetAvailabilityRequest{Caller: admin, Availability: hours}, cluster.CallOptions(0)...); err != nil {
		t.Fatalf("set availability: %v", err)
	}
	return id
}

var idnpSeq atomic.Int64

func newPatients(t *testing.T, c *actorcluster.Cluster, n int) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := fmt.Sprintf("%012d", 100000+idnpSeq.Add(1)+time.Now().UnixNano()%1e9*1000)
			req := &messages.RegisterPatientRequest{Caller: desk, Patient: &messages.PatientRecord{
				Idnp: s + string(patient.CheckDigit(s)), GivenName: "Ion", FamilyName: "Rusu", BirthDate: "1970-01-01", Sex: messages.Sex_SEX_MALE}}
			_, err := cluster.Call(context.Background(), c, "Patient", ids[i], func() (*messages.PatientReply, error) {
				return messages.GetPatientGrainClient(c, ids[i]).Register(req, cluster.CallOptions(0)...)
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("register patient: %v", err)
	}
	return ids
}

func book(c *actorcluster.Cluster, caller *messages.Caller, doctor, apptID, patientID string, start time.Time, minutes int32) (*messages.AppointmentReply, error) {
	req := &messages.BookRequest{Caller: caller, AppointmentId: apptID, PatientId: patientID,
		Start: timestamppb.New(start), DurationMinutes: minutes, Reason: "checkup"}
	return cluster.Call(context.Background(), c, "Calendar", doctor, func() (*messages.AppointmentReply, error) {
		return messages.GetCalendarGrainClient(c, doctor).Book(req, cluster.CallOptions(0)...)
	})
}

// firstSlot is a grid-aligned time safely in the future.
func firstSlot() time.Time {
	return time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)
}

func reason(err error) string {
	var ge *actorcluster.GrainErrorResponse
	if errors.As(err, &ge) {
		return ge.Reason
	}
	if err != nil {
		return "transport: " + err.Error()
	}
	return "ok"
}

// checkClaims asserts the database's view: every appointment that holds
// time (booked, checked in, or a hold whose saga has not ended: a request
// that timed out leaves one until it expires) owns exactly its cells, no
// two of them overlap, no cell has two owners (the primary key), and
// nothing else holds a claim.
func checkClaims(t *testing.T, db *persistence.DB, doctor string) []*messages.AppointmentRecord {
	t.Helper()
	ctx := context.Background()
	appts, err := db.DoctorAgenda(ctx, doctor, time.Now(), time.Now().Add(365*24*time.Hour), 10000)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := db.DoctorClaims(ctx, doctor)
	if err != nil {
		t.Fatal(err)
	}
	// The agenda leaves holds out; they hold time all the same.
	rows, err := db.Pool.Query(ctx, `SELECT id, start_at, end_at FROM appointments WHERE doctor_id = $1 AND status = 'held'`, doctor)
	if err != nil {
		t.Fatal(err)
	}
	var holding []*messages.AppointmentRecord
	for rows.Next() {
		var id string
		var start, end time.Time
		if err := rows.Scan(&id, &start, &end); err != nil {
			t.Fatal(err)
		}
		holding = append(holding, &messages.AppointmentRecord{Id: id, Status: messages.AppointmentStatus_APPOINTMENT_STATUS_HELD,
			Start: timestamppb.New(start), End: timestamppb.New(end)})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, a := range appts {
		if calendar.Holds(a) {
			holding = append(holding, a)
		}
	}
	owner := map[time.Time]string{}
	for _, c := range claims {
		owner[c.Cell.UTC()] = c.AppointmentID
	}
	want := 0
	for i, a := range holding {
		for _, b := range holding[i+1:] {
			if a.Start.AsTime().Before(b.End.AsTime()) && b.Start.AsTime().Before(a.End.AsTime()) {
				t.Fatalf("double booking: %s and %s overlap", a.Id, b.Id)
			}
		}
		for _, cell := range calendar.Cells(calendar.IntervalOf(a)) {
			want++
			if owner[cell] != a.Id {
				t.Fatalf("cell %s of %s is claimed by %q", cell, a.Id, owner[cell])
			}
		}
	}
	if len(claims) != want {
		t.Fatalf("%d claims in the database, want %d (the cells of the appointments that hold time)", len(claims), want)
	}
	return appts
}

func TestConcurrentBookingsOfFiftySlots(t *testing.T) {
	db := pgtest.New(t)
	agent := cluster.NewAgent()
	name := fmt.Sprintf("book-%d", time.Now().UnixNano())
	nodes := startGroup(t, memberConfig(t, db, name, agent), memberConfig(t, db, name, agent), memberConfig(t, db, name, agent))
	waitMembers(t, nodes, 3)
	doctor := newDoctor(t, db, nodes[0].Cluster)
	patients := newPatients(t, nodes[0].Cluster, 10)

	const slots, attempts = 50, 500
	first := firstSlot()
	type result struct {
		slot int
		id   string
		err  error
	}
	results := make(chan result, attempts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			slot, id := i%slots, uuid.NewString()
			// Patient i/50 tries every slot once: never a patient overlap.
			_, err := book(nodes[i%3].Cluster, desk, doctor, id, patients[i/slots], first.Add(time.Duration(slot)*15*time.Minute), 15)
			results <- result{slot, id, err}
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	won := map[int]string{}
	counts := map[string]int{}
	for r := range results {
		counts[reason(r.err)]++
		if r.err == nil {
			if prev, ok := won[r.slot]; ok {
				t.Fatalf("slot %d booked twice: %s and %s", r.slot, prev, r.id)
			}
			won[r.slot] = r.id
		}
	}
	if counts["ok"] != slots || counts[messages.ErrorReason_SLOT_TAKEN.String()] != attempts-slots {
		t.Fatalf("outcomes %v, want %d ok and %d SLOT_TAKEN", counts, slots, attempts-slots)
	}
	appts := checkClaims(t, db, doctor)
	for slot, id := range won {
		found := false
		for _, a := range appts {
			found = found || (a.Id == id && a.Status == messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED)
		}
		if !found {
			t.Fatalf("the 201 for slot %d (%s) is not booked in the database", slot, id)
		}
	}
	if len(appts) != slots {
		t.Fatalf("%d appointments stored, want %d", len(appts), slots)
	}
	// Each booking published one BOOKED event, whether its hold was written
	// first or it was written booked at once.
	booked := bookedEvents(t, db, doctor)
	for _, id := range won {
		if booked[id] != 1 {
			t.Fatalf("booking %s has %d BOOKED events, want 1", id, booked[id])
		}
	}
	if len(booked) != slots {
		t.Fatalf("BOOKED events for %d appointments, want %d", len(booked), slots)
	}
	// Every answer was audited before it was sent: the 201s (answered
	// together after their batch) and the refusals.
	audited := map[string]int{}
	for _, id := range won {
		audited[id] = 0
	}
	rows, err := db.Pool.Query(context.Background(), `SELECT resource_id, outcome FROM audit_events
		WHERE action = 'create' AND resource_type = 'appointment' AND patient_id = ANY($1::TEXT[])`, patients)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for rows.Next() {
		var id, outcome string
		if err := rows.Scan(&id, &outcome); err != nil {
			t.Fatal(err)
		}
		if _, ok := audited[id]; ok && outcome == "success" {
			audited[id]++
		} else {
			failed++
		}
	}
	for id, n := range audited {
		if n != 1 {
			t.Fatalf("booking %s audited %d times, want once", id, n)
		}
	}
	if failed != attempts-slots {
		t.Fatalf("%d refused bookings audited, want %d", failed, attempts-slots)
	}
}

// TestBookingIsAnsweredWhileTheAuditChainIsDown: a booking's audit row is
// written in the booking's own transaction, so a booking made while the
// audit chain cannot be written is answered, not AUDIT_UNAVAILABLE; its
// event waits in audit_pending and is chained, once, when the trail is back.
func TestBookingIsAnsweredWhileTheAuditChainIsDown(t *testing.T) {
	db := pgtest.New(t)
	nodes := startGroup(t, memberConfig(t, db, fmt.Sprintf("audit-%d", time.Now().UnixNano()), nil))
	c := nodes[0].Cluster
	doctor := newDoctor(t, db, c)
	ps := newPatients(t, c, 1)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE audit_events RENAME TO audit_events_away`); err != nil {
		t.Fatal(err)
	}
	first, err := book(c, desk, doctor, uuid.NewString(), ps[0], firstSlot(), 15)
	if err != nil {
		t.Fatalf("booking while the audit chain cannot be written = %v, want it answered", err)
	}
	var pending int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&pending); err != nil || pending != 1 {
		t.Fatalf("%d audit events wait (%v), want the booking's", pending, err)
	}
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE audit_events_away RENAME TO audit_events`); err != nil {
		t.Fatal(err)
	}
	reply, err := book(c, desk, doctor, uuid.NewString(), ps[0], firstSlot().Add(time.Hour), 15)
	if err != nil {
		t.Fatalf("booking once the audit store is back = %v", err)
	}
	for _, id := range []string{first.Appointment.Id, reply.Appointment.Id} {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE resource_id = $1 AND action = 'create'`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("audit events of booking %s = %d, %v; want 1", id, n, err)
		}
	}
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("%d audit events still wait (%v)", pending, err)
	}
}

// bookedEvents counts the BOOKED events in the doctor's outbox per appointment.
func bookedEvents(t *testing.T, db *persistence.DB, doctor string) map[string]int {
	t.Helper()
	evs, err := db.OutboxEvents(context.Background(), persistence.CalendarKind, doctor)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs {
		var ch messages.AppointmentChanged
		if e.EventType != string(proto.MessageName(&ch)) {
			continue
		}
		if err := proto.Unmarshal(e.Payload, &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Change == messages.AppointmentChange_APPOINTMENT_CHANGE_BOOKED {
			out[ch.Appointment.GetId()]++
		}
	}
	return out
}

// TestBookingsWhileMembersJoinAndLeave books while a fourth member joins and
// one of the first three leaves: calendars and patients move, duplicate
// activations happen, and the fence and the claims' key must keep every
// slot single. Two clients race for every slot, and some patients are asked
// for two doctors at once.
func TestBookingsWhileMembersJoinAndLeave(t *testing.T) {
	db := pgtest.New(t)
	agent := cluster.NewAgent()
	name := fmt.Sprintf("churn-%d", time.Now().UnixNano())
	nodes := startGroup(t, memberConfig(t, db, name, agent), memberConfig(t, db, name, agent), memberConfig(t, db, name, agent))
	waitMembers(t, nodes, 3)
	const doctors = 4
	ds := make([]string, doctors)
	for i := range ds {
		ds[i] = newDoctor(t, db, nodes[0].Cluster)
	}
	patients := newPatients(t, nodes[0].Cluster, 6)
	first := firstSlot()

	var (
		mu      sync.Mutex
		won     = map[string]string{} // appointment id -> doctor
		outcome = map[string]int{}
		seq     atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients := []*actorcluster.Cluster{nodes[0].Cluster, nodes[1].Cluster} // node 2 leaves
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Requests n and n+1 race for one slot of one doctor; the
				// same time at the four doctors goes to 8 requests of 6
				// patients, so some patients collide with themselves.
				n := seq.Add(1)
				pair := n / 2
				d, slot, p := ds[pair%doctors], pair/doctors, patients[n%int64(len(patients))]
				id := uuid.NewString()
				_, err := book(clients[w%2], desk, d, id, p, first.Add(time.Duration(slot)*15*time.Minute), 15)
				mu.Lock()
				outcome[reason(err)]++
				if err == nil {
					won[id] = d
				}
				mu.Unlock()
			}
		}()
	}
	// Each change of membership happens while bookings go through, and the
	// next waits until bookings went through after it.
	progressed := func(what string) {
		t.Helper()
		mu.Lock()
		from := outcome["ok"]
		mu.Unlock()
		await.Until(t, "40 more bookings "+what, time.Minute, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return outcome["ok"] >= from+40
		})
	}
	progressed("before the churn")
	joined, err := cluster.Start(context.Background(), memberConfig(t, db, name, agent))
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	t.Cleanup(func() { joined.Stop(true) })
	waitMembers(t, []*cluster.Node{nodes[0], nodes[1], joined}, 4)
	progressed("with the fourth member")
	nodes[2].Stop(true)
	waitMembers(t, []*cluster.Node{nodes[0], nodes[1], joined}, 3)
	progressed("after the third member left")
	close(stop)
	wg.Wait()

	t.Logf("outcomes: %v", outcome)
	if outcome["ok"] < 100 || outcome[messages.ErrorReason_SLOT_TAKEN.String()] == 0 || outcome[messages.ErrorReason_PATIENT_OVERLAP.String()] == 0 {
		t.Fatalf("outcomes %v: the run did not exercise bookings, slot races and patient overlaps", outcome)
	}
	byID := map[string]*messages.AppointmentRecord{}
	for _, d := range ds {
		for _, a := range checkClaims(t, db, d) {
			byID[a.Id] = a
		}
	}
	for id, d := range won {
		a := byID[id]
		if a == nil || a.DoctorId != d || a.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED {
			t.Fatalf("appointment %s answered 201 but is %v in the database", id, a)
		}
	}
	// No patient has two overlapping booked appointments.
	for _, p := range patients {
		appts, err := db.PatientAppointments(context.Background(), p, time.Unix(0, 0), "", 100000)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range appts {
			for _, b := range appts[i+1:] {
				if a.Start.AsTime().Before(b.End.AsTime()) && b.Start.AsTime().Before(a.End.AsTime()) {
					t.Fatalf("patient %s double-booked: %s and %s", p, a.Id, b.Id)
				}
			}
		}
	}
}

// strandHold writes a hold as a booking saga would and then dies: another
// "node" claims the calendar (fencing the live activation) and writes the
// hold, and nothing ever confirms it.
func strandHold(t *testing.T, db *persistence.DB, doctor, apptID, patientID string, start time.Time) {
	t.Helper()
	ctx := context.Background()
	f, err := db.Claim(ctx, persistence.CalendarKind, doctor, "dead-node")
	if err != nil {
		t.Fatal(err)
	}
	iv := calendar.Interval{Start: start, End: start.Add(15 * time.Minute)}
	a := calendar.NewHold(apptID, doctor, patientID, "desk-1", "checkup", iv, clock.Now(), holdTTL)
	fp := calendar.BookingFingerprint(patientID, start, 15, "checkup")
	if _, err := db.WriteCalendar(ctx, f, &persistence.CalendarBatch{DoctorID: doctor,
		Inserts: []persistence.NewAppointment{{Record: a, Fingerprint: fp, Cells: calendar.Cells(iv)}}}); err != nil {
		t.Fatal(err)
	}
}

// TestStrandedHoldExpires: a hold whose saga died keeps its slot until it
// expires, also for an activation that starts after it was written, and
// then frees it; the replay of the stranded request itself resumes it.
func TestStrandedHoldExpires(t *testing.T) {
	db := pgtest.New(t)
	nodes := startGroup(t, memberConfig(t, db, fmt.Sprintf("hold-%d", time.Now().UnixNano()), nil))
	c := nodes[0].Cluster
	doctor := newDoctor(t, db, c)
	ps := newPatients(t, c, 3)
	slot := firstSlot()

	stranded := uuid.NewString()
	strandHold(t, db, doctor, stranded, ps[0], slot)
	// The live activation is fenced; the retry reaches one that loads the hold.
	if _, err := book(c, desk, doctor, uuid.NewString(), ps[1], slot, 15); reason(err) != messages.ErrorReason_SLOT_TAKEN.String() {
		t.Fatalf("booking a held slot = %v, want SLOT_TAKEN", err)
	}
	clock.Shift(t, holdTTL+time.Second) // the hold's time is up
	got, err := book(c, desk, doctor, uuid.NewString(), ps[1], slot, 15)
	if err != nil {
		t.Fatalf("booking after the hold expired = %v", err)
	}
	if _, _, err := db.GetAppointment(context.Background(), stranded); !errors.Is(err, persistence.ErrNoAppointment) {
		t.Fatalf("the expired hold is still stored: %v", err)
	}
	checkClaims(t, db, doctor)

	// A stranded hold whose request is replayed in time is finished, not lost.
	again, next := uuid.NewString(), slot.Add(time.Hour)
	strandHold(t, db, doctor, again, ps[2], next)
	reply, err := book(c, desk, doctor, again, ps[2], next, 15)
	if err != nil || !reply.Replayed || reply.Appointment.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED {
		t.Fatalf("replay of a stranded booking = %v, %v; want it booked, replayed", reply, err)
	}
	appts := checkClaims(t, db, doctor)
	ids := map[string]bool{}
	for _, a := range appts {
		ids[a.Id] = a.Status == messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED
	}
	if len(appts) != 2 || !ids[got.Appointment.Id] || !ids[again] {
		t.Fatalf("appointments %v, want booked: the booking after expiry %s and the replayed one %s", ids, got.Appointment.Id, again)
	}
}

// TestBookingIsWrittenOnceThePatientAccepts: a booking's hold stays in
// memory while the patient's grain is asked, and the booking is written in
// one go after: while the calendar's writes are held up (its fence row is
// locked), the patient has reserved and nothing of the booking is stored;
// once the lock goes, it is booked with one BOOKED event. A booking the
// patient refuses writes nothing at all.
func TestBookingIsWrittenOnceThePatientAccepts(t *testing.T) {
	db := pgtest.New(t)
	nodes := startGroup(t, memberConfig(t, db, fmt.Sprintf("once-%d", time.Now().UnixNano()), nil))
	c := nodes[0].Cluster
	doctor := newDoctor(t, db, c)
	ps := newPatients(t, c, 1)
	slot := firstSlot()
	ctx := context.Background()

	lock, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `SELECT 1 FROM grain_owner WHERE kind = $1 AND id = $2 FOR UPDATE`, persistence.CalendarKind, doctor); err != nil {
		t.Fatal(err)
	}
	once := stats.WrittenAtOnce.Load()
	type outcome struct {
		reply *messages.AppointmentReply
		err   error
	}
	first := make(chan outcome, 1)
	go func() {
		r, err := book(c, desk, doctor, uuid.NewString(), ps[0], slot, 15)
		first <- outcome{r, err}
	}()
	await.Until(t, "the patient's reservation", 30*time.Second, func() bool { return reservations(t, db, ps[0]) == 1 })
	await.Until(t, "the booking's write", 30*time.Second, func() bool { return stats.WrittenAtOnce.Load() == once+1 })
	if appts := checkClaims(t, db, doctor); len(appts) != 0 {
		t.Fatalf("%d appointments stored before the write went through, want none (no durable hold)", len(appts))
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	o := <-first
	if o.err != nil || o.reply.Appointment.Status != messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED || o.reply.Appointment.Version != 2 {
		t.Fatalf("booking = %v, %v; want booked at version 2", o.reply, o.err)
	}
	if booked := bookedEvents(t, db, doctor); booked[o.reply.Appointment.Id] != 1 {
		t.Fatalf("booking %s has %d BOOKED events, want 1", o.reply.Appointment.Id, booked[o.reply.Appointment.Id])
	}

	// The same patient at the same time with this doctor again: the
	// patient's grain refuses, and nothing is written.
	if _, err := book(c, desk, doctor, uuid.NewString(), ps[0], slot.Add(0), 15); reason(err) != messages.ErrorReason_SLOT_TAKEN.String() {
		t.Fatalf("the same slot again = %v, want SLOT_TAKEN", err)
	}
	other := newDoctor(t, db, c)
	if _, err := book(c, desk, other, uuid.NewString(), ps[0], slot, 15); reason(err) != messages.ErrorReason_PATIENT_OVERLAP.String() {
		t.Fatalf("the patient at the same time with another doctor = %v, want PATIENT_OVERLAP", err)
	}
	if appts := checkClaims(t, db, other); len(appts) != 0 {
		t.Fatalf("the refused booking stored %d appointments, want none", len(appts))
	}
	if appts := checkClaims(t, db, doctor); len(appts) != 1 {
		t.Fatalf("%d appointments stored, want 1", len(appts))
	}
	// The booking's audit event was chained in the booking's own
	// transaction (the committer's chain): nothing of it waits in
	// audit_pending.
	var chained, pending int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events WHERE resource_id = $1 AND action = 'create'),
		(SELECT count(*) FROM audit_pending)`, o.reply.Appointment.Id).Scan(&chained, &pending); err != nil || chained != 1 || pending != 0 {
		t.Fatalf("the booking's audit: %d chained, %d pending, %v; want 1 chained, none pending", chained, pending, err)
	}
}

// reservations counts the patient's stored reservations.
func reservations(t *testing.T, db *persistence.DB, patientID string) int {
	t.Helper()
	rs, err := db.PatientReservations(context.Background(), patientID, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return len(rs)
}

func reschedule(c *actorcluster.Cluster, doctor, id string, start time.Time) (*messages.AppointmentReply, error) {
	req := &messages.RescheduleRequest{Caller: desk, AppointmentId: id, Start: timestamppb.New(start)}
	return cluster.Call(context.Background(), c, "Calendar", doctor, func() (*messages.AppointmentReply, error) {
		return messages.GetCalendarGrainClient(c, doctor).Reschedule(req, cluster.CallOptions(0)...)
	})
}

// TestRescheduleRaces: many appointments race to move onto one free slot
// (one wins), and one appointment is moved to many places at once (it ends
// at exactly one of them); the claims match the appointments throughout.
func TestRescheduleRaces(t *testing.T) {
	db := pgtest.New(t)
	agent := cluster.NewAgent()
	name := fmt.Sprintf("move-%d", time.Now().UnixNano())
	nodes := startGroup(t, memberConfig(t, db, name, agent), memberConfig(t, db, name, agent))
	waitMembers(t, nodes, 2)
	doctor := newDoctor(t, db, nodes[0].Cluster)
	ps := newPatients(t, nodes[0].Cluster, 8)
	first := firstSlot()
	ids := make([]string, len(ps))
	for i, p := range ps {
		reply, err := book(nodes[0].Cluster, desk, doctor, uuid.NewString(), p, first.Add(time.Duration(i)*15*time.Minute), 15)
		if err != nil {
			t.Fatalf("book %d: %v", i, err)
		}
		ids[i] = reply.Appointment.Id
	}

	target := first.Add(10 * time.Hour)
	var wg sync.WaitGroup
	var moved atomic.Int32
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := reschedule(nodes[i%2].Cluster, doctor, id, target); err == nil {
				moved.Add(1)
			} else if r := reason(err); r != messages.ErrorReason_SLOT_TAKEN.String() && r != messages.ErrorReason_WRONG_STATE.String() {
				t.Errorf("reschedule %d = %v", i, err)
			}
		}()
	}
	wg.Wait()
	if moved.Load() != 1 {
		t.Fatalf("%d appointments moved onto one slot, want 1", moved.Load())
	}
	checkClaims(t, db, doctor)

	// One appointment, many destinations at once.
	var ok atomic.Int32
	for k := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := reschedule(nodes[k%2].Cluster, doctor, ids[0], first.Add(time.Duration(20+k)*time.Hour)); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	appts := checkClaims(t, db, doctor)
	if len(appts) != len(ids) || ok.Load() == 0 {
		t.Fatalf("after concurrent moves: %d appointments, %d moves succeeded", len(appts), ok.Load())
	}
}

// BenchmarkMemoryPerActiveCalendar creates b.N doctors through one member
// (each with round-the-clock hours) and keeps their calendars active, then
// reports the heap they hold per calendar (no appointments: a doctor's
// appointments add to it). It runs once in make test (-benchtime 1x); the
// README's figure comes from a larger -benchtime.
func BenchmarkMemoryPerActiveCalendar(b *testing.B) {
	db := pgtest.New(b)
	nodes := startGroup(b, memberConfigIdle(b, db, fmt.Sprintf("mem-%d", time.Now().UnixNano()), nil, time.Hour))
	c := nodes[0].Cluster
	newDoctor(b, db, c) // warm
	before := memstat.LiveHeap()
	b.ResetTimer()
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range work {
				newDoctor(b, db, c)
			}
		})
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(memstat.LiveHeap()-before)/float64(b.N), "heap-B/calendar")
	runtime.KeepAlive(nodes)
}
