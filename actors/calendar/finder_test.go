package calendar

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func showFound(fs []FoundSlot) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s %s-%s; ", f.DoctorID, f.Start.Format("15:04"), f.End.Format("15:04"))
	}
	return b.String()
}

// TestFreeInMergesDoctorsInTimeOrder: slots of several doctors come in
// (start, doctor) order, busy time is left out, and limit and cursor cut
// the list where a page ends.
func TestFreeInMergesDoctorsInTimeOrder(t *testing.T) {
	zone := mustZone(t, "Europe/Chisinau")
	doctors := []finderDoctor{
		{view: persistence.DoctorView{DoctorID: "b"}, hours: daily(zone, 30, r("08:00", "09:30"))}, // 06:00-07:30Z
		{view: persistence.DoctorView{DoctorID: "a"}, hours: daily(zone, 45, r("08:00", "09:30"))},
	}
	busy := []persistence.BusyView{{AppointmentID: "x", DoctorID: "b", Start: utc("2026-11-24T06:40:00Z"), End: utc("2026-11-24T06:50:00Z")}}
	from, to, now := utc("2026-11-24T00:00:00Z"), utc("2026-11-25T00:00:00Z"), utc("2026-11-23T12:00:00Z")

	got := freeIn(doctors, busy, from, to, now, time.Time{}, "", 10)
	want := "a 06:00-06:45; b 06:00-06:30; a 06:45-07:30; b 07:00-07:30; "
	if showFound(got) != want {
		t.Fatalf("free = %s\nwant   %s", showFound(got), want)
	}
	if got := freeIn(doctors, busy, from, to, now, time.Time{}, "", 2); showFound(got) != "a 06:00-06:45; b 06:00-06:30; " {
		t.Fatalf("limit 2 = %s", showFound(got))
	}
	// The cursor of "a 06:00" continues with "b 06:00", the same start.
	cur := got[0]
	at, doctor, err := parseCursor(cur.Cursor())
	if err != nil || !at.Equal(cur.Start) || doctor != "a" {
		t.Fatalf("cursor round trip = %v %q %v", at, doctor, err)
	}
	if got := freeIn(doctors, busy, from, to, now, at, doctor, 10); showFound(got) != "b 06:00-06:30; a 06:45-07:30; b 07:00-07:30; " {
		t.Fatalf("after cursor = %s", showFound(got))
	}
	// Slots that have begun are not offered.
	if got := freeIn(doctors, busy, from, to, utc("2026-11-24T06:10:00Z"), time.Time{}, "", 10); showFound(got) != "a 06:45-07:30; b 07:00-07:30; " {
		t.Fatalf("at 06:10 = %s", showFound(got))
	}
	for _, bad := range []string{"", "!!", "MTIz", "eDEvYQ"} {
		if _, _, err := parseCursor(bad); err == nil {
			t.Errorf("parseCursor(%q) accepted", bad)
		}
	}
}

// TestProjectMapsCalendarEvents: a doctor's event gives the doctor view, an
// appointment's gives its time, occupied only while it holds its time.
func TestProjectMapsCalendarEvents(t *testing.T) {
	ev := func(m proto.Message) persistence.OutboxEvent {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return persistence.OutboxEvent{EventType: string(proto.MessageName(m)), Payload: b}
	}
	var p persistence.Projection
	d := &messages.DoctorRecord{Id: "d1", Specialty: "Cardiology", ClinicId: "c1", TimeZone: "Europe/Chisinau", SlotMinutes: 20, Version: 4}
	if err := Project(ev(&messages.DoctorChanged{Doctor: d, Availability: &messages.Availability{SlotMinutes: 20}}), &p); err != nil {
		t.Fatal(err)
	}
	start := utc("2026-11-24T06:00:00Z")
	for i, st := range []messages.AppointmentStatus{booked, checkedIn, completed, noShow, cancelled} {
		a := &messages.AppointmentRecord{Id: fmt.Sprint(i), DoctorId: "d1", Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour)), Status: st, Version: 2}
		if err := Project(ev(&messages.AppointmentChanged{Appointment: a}), &p); err != nil {
			t.Fatal(err)
		}
	}
	if err := Project(ev(&messages.PatientRegistered{}), &p); err != nil {
		t.Fatalf("an event the finder does not use: %v", err)
	}
	if len(p.Doctors) != 1 || p.Doctors[0].DoctorID != "d1" || p.Doctors[0].Version != 4 || p.Doctors[0].SlotMinutes != 20 {
		t.Fatalf("doctors = %+v", p.Doctors)
	}
	var occupied []bool
	for _, b := range p.Busy {
		occupied = append(occupied, b.Occupied)
	}
	if fmt.Sprint(occupied) != "[true true false false false]" {
		t.Fatalf("occupied by status (booked, checked in, completed, no-show, cancelled) = %v", occupied)
	}
	if err := Project(persistence.OutboxEvent{EventType: doctorChangedType, Payload: []byte{0xff}}, &p); err == nil {
		t.Fatal("a malformed event was projected")
	}
	if err := Project(ev(&messages.DoctorChanged{}), &p); err == nil {
		t.Fatal("a doctor event without a doctor was projected")
	}
}

// BenchmarkFinder searches a read model of 200 doctors (4 specialties,
// 08:00-18:00 on weekdays, 15-minute slots, 40 appointments each in the
// coming week) on the real database: the first page of one specialty, and
// of everyone.
func BenchmarkFinder(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	zone := "Europe/Chisinau"
	loc, err := time.LoadLocation(zone)
	if err != nil {
		b.Fatal(err)
	}
	var weekly []*messages.WeeklyHours
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday"} {
		weekly = append(weekly, &messages.WeeklyHours{Weekday: d, Ranges: []*messages.TimeRange{{Start: "08:00", End: "18:00"}}})
	}
	now := time.Now()
	day0 := time.Date(now.Year(), now.Month(), now.Day()+1, 8, 0, 0, 0, loc)
	specialties := []string{"cardiology", "neurology", "dermatology", "family medicine"}
	var events []persistence.OutboxEvent
	add := func(m proto.Message) {
		payload, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, persistence.OutboxEvent{EventType: string(proto.MessageName(m)), Payload: payload})
	}
	for i := range 200 {
		id := uuid.NewString()
		add(&messages.DoctorChanged{Doctor: &messages.DoctorRecord{Id: id, Specialty: specialties[i%4], ClinicId: uuid.NewString(),
			TimeZone: zone, SlotMinutes: 15, Version: 1}, Availability: &messages.Availability{SlotMinutes: 15, Weekly: weekly}})
		for j := range 40 {
			start := day0.AddDate(0, 0, j/8).Add(time.Duration(j%8) * time.Hour)
			add(&messages.AppointmentChanged{Appointment: &messages.AppointmentRecord{Id: uuid.NewString(), DoctorId: id,
				Start: timestamppb.New(start), End: timestamppb.New(start.Add(30 * time.Minute)), Status: booked, Version: 2}})
		}
	}
	// Into the outbox as the grains would write them, then through the relay.
	types, payloads := make([]string, len(events)), make([][]byte, len(events))
	for i, e := range events {
		types[i], payloads[i] = e.EventType, e.Payload
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox (id, aggregate_kind, aggregate_id, aggregate_version, event_type, payload, created_at)
		SELECT gen_random_uuid(), 'Calendar', 'bench', 1, u.type, u.payload, now() FROM unnest($1::TEXT[], $2::BYTEA[]) AS u (type, payload)`,
		types, payloads); err != nil {
		b.Fatal(err)
	}
	for {
		n, _, refused, err := db.RelayOutbox(ctx, 1000, Project)
		if err != nil || len(refused) > 0 {
			b.Fatal(err, refused)
		}
		if n == 0 {
			break
		}
	}
	f := &Finder{Store: db}
	c := &messages.Caller{Subject: "p", Role: messages.Role_ROLE_PATIENT}
	for _, tc := range []struct{ name, specialty string }{{"one-specialty", "neurology"}, {"everyone", ""}} {
		b.Run(tc.name, func(b *testing.B) {
			q := SlotQuery{Specialty: tc.specialty, From: day0.Add(-time.Hour), To: day0.AddDate(0, 0, 7), Limit: 50}
			for b.Loop() {
				got, _, err := f.Find(ctx, c, q)
				if err != nil || len(got) != 50 {
					b.Fatalf("found %d, %v", len(got), err)
				}
			}
		})
	}
}
