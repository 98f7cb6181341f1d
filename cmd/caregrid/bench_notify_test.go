package main

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/notify/notifytest"
	"github.com/caregrid/caregrid/persistence/pgtest"
)

// BenchmarkRemindersDueInOneMinute: reminders for N appointments (100,000;
// 500 under the race detector; CAREGRID_BENCH_REMINDERS sets it) whose
// day-before reminders all fall due in the same minute are decided and
// handed to the test providers (an SMTP server and an SMPP gateway on
// loopback: one email and one SMS each), by one member's notifier and
// dispatcher on the real database. It reports messages per second, from
// the first due time to the last send, and the lag from each reminder's
// due time to its send (median, p99, max).
func BenchmarkRemindersDueInOneMinute(b *testing.B) {
	n := 100_000
	if raceEnabled {
		n = 500
	}
	if v, err := strconv.Atoi(os.Getenv("CAREGRID_BENCH_REMINDERS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		db := pgtest.New(b)
		smtp, smpp := notifytest.StartSMTP(b, ""), notifytest.StartSMPP(b, "")
		// Midday in Chisinau on the notifications' clock: no quiet hours.
		zone, _ := time.LoadLocation("Europe/Chisinau")
		d := time.Now().In(zone).AddDate(0, 0, 1)
		offset := time.Until(time.Date(d.Year(), d.Month(), d.Day(), 12, 0, 0, 0, zone))
		now := func() time.Time { return time.Now().Add(offset) }
		if _, err := db.Pool.Exec(ctx, `INSERT INTO clinics (id, name, address, time_zone, version, registration_fingerprint, created_at, updated_at)
			VALUES ('00000000-0000-4000-8000-000000000001', 'Clinica', 'Chisinau', 'Europe/Chisinau', 1, '', now(), now());
			INSERT INTO doctors (id, given_name, family_name, specialty, clinic_id, email, phone, time_zone, slot_minutes, availability, version, registration_fingerprint, created_at, updated_at)
			SELECT ('00000000-0000-4000-9000-' || lpad(i::TEXT, 12, '0'))::UUID, 'Elena', 'Doctor' || i, 'cardiology', '00000000-0000-4000-8000-000000000001',
				'', '', 'Europe/Chisinau', 15, '{}', 1, '', now(), now() FROM generate_series(1, 500) AS i;`); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO patients (id, idnp, given_name, family_name, birth_date, sex, phone, email, blood_type, allergies, version, registration_fingerprint, created_at, updated_at)
			SELECT ('00000000-0000-4000-a000-' || lpad(i::TEXT, 12, '0'))::UUID, lpad(i::TEXT, 13, '0'), 'Maria', 'Pacient' || i, '1980-01-01', 'female',
				'+3736' || lpad(i::TEXT, 7, '0'), 'p' || i || '@example.md', '', '[]', 1, '', now(), now() FROM generate_series(1, $1) AS i;
			`, n); err != nil {
			b.Fatal(err)
		}
		templates, err := notify.LoadTemplates("")
		if err != nil {
			b.Fatal(err)
		}
		sealer, err := notify.NewSealer(testMaster)
		if err != nil {
			b.Fatal(err)
		}
		decider := notify.Decider{Templates: templates, Sealer: sealer, Language: "ro", PortalURL: "https://portal.hospital.example",
			Enabled: map[string]bool{"email": true, "sms": true}, Now: now}
		notifier := &notify.Notifier{DB: db, Decider: decider, Reminders: []int32{24 * 60}, Idle: 20 * time.Millisecond}
		if _, _, err := notifier.Pass(ctx); err != nil { // the reminders' window starts now
			b.Fatal(err)
		}
		// The reminders all fall due at once (within 60 ms), after the
		// setup: the figure is what one member sends, not the rate they
		// fall due at.
		setup := 20 * time.Second
		firstDue := now().Add(setup).Truncate(time.Second)
		if _, err := db.Pool.Exec(ctx, `INSERT INTO appointments (id, doctor_id, patient_id, start_at, end_at, status, reason, fingerprint, booked_by, version, created_at, updated_at)
			SELECT gen_random_uuid(), ('00000000-0000-4000-9000-' || lpad((1 + i % 500)::TEXT, 12, '0'))::UUID, ('00000000-0000-4000-a000-' || lpad(i::TEXT, 12, '0'))::UUID,
				$2::TIMESTAMPTZ + INTERVAL '1 day' + (i % 60) * INTERVAL '1 millisecond', $2::TIMESTAMPTZ + INTERVAL '1 day' + INTERVAL '15 minutes',
				'booked', '', '', 'bench', 1, now(), now() FROM generate_series(1, $1) AS i`, n, firstDue); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `ANALYZE`); err != nil {
			b.Fatal(err)
		}
		sms := &notify.SMS{Addr: smpp.Addr, SystemID: smpp.SystemID, Password: smpp.Password, Source: "caregrid"}
		defer sms.Close()
		dispatcher := &notify.Dispatcher{DB: db, Sealer: sealer, Senders: map[string]notify.Sender{
			"email": notify.Email{Addr: smtp.Addr, From: "caregrid <no-reply@hospital.example>"}, "sms": sms},
			Now: now, Idle: 20 * time.Millisecond, Workers: 32, Batch: 500}
		if now().After(firstDue) {
			b.Fatalf("the setup took longer than %s: the reminders fell due before the timer started", setup)
		}
		runCtx, stop := context.WithCancel(ctx)
		b.StartTimer()
		go notifier.Run(runCtx)
		go dispatcher.Run(runCtx)
		decidedAt := time.Time{}
		deadline := time.Now().Add(30 * time.Minute)
		for len(smtp.Mails()) < n || len(smpp.Messages()) < n {
			if decidedAt.IsZero() {
				var decided int
				_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM notifications`).Scan(&decided)
				if decided == 2*n {
					decidedAt = time.Now()
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("after 30 minutes: %d emails, %d SMS of %d", len(smtp.Mails()), len(smpp.Messages()), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.StopTimer()
		stop()
		var p50, p99, worst, span float64
		if err := db.Pool.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag),
				extract(epoch FROM max(sent_at) - min(due))
			FROM (SELECT extract(epoch FROM n.sent_at - (a.start_at - INTERVAL '1 day')) AS lag, n.sent_at, a.start_at - INTERVAL '1 day' AS due
				FROM notifications n JOIN appointments a ON a.id = n.about::UUID WHERE n.event = 'appointment-reminder' AND n.sent_at IS NOT NULL) AS l`).
			Scan(&p50, &p99, &worst, &span); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(2*n)/span, "msgs/s")
		b.ReportMetric(decidedAt.Sub(firstDue.Add(-offset)).Seconds(), "all-decided-s")
		b.ReportMetric(p50, "lag-p50-s")
		b.ReportMetric(p99, "lag-p99-s")
		b.ReportMetric(worst, "lag-max-s")
		if d := smtp.Duplicates(); d != 0 {
			b.Fatalf("%d emails sent twice", d)
		}
	}
}
