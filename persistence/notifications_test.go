package persistence_test

import (
	"context"
	"testing"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
)

// remindersFixture is one clinic and doctor, and n booked appointments
// all starting at start, each of its own patient.
func remindersFixture(t *testing.T, db *persistence.DB, n int, start time.Time) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO clinics (id, name, address, time_zone, version, registration_fingerprint, created_at, updated_at)
			VALUES ('00000000-0000-4000-8000-000000000001', 'Clinica', 'Chisinau', 'Europe/Chisinau', 1, '', now(), now());
		INSERT INTO doctors (id, given_name, family_name, specialty, clinic_id, email, phone, time_zone, slot_minutes, availability, version, registration_fingerprint, created_at, updated_at)
			VALUES ('00000000-0000-4000-9000-000000000001', 'Elena', 'Doctor', 'cardiology', '00000000-0000-4000-8000-000000000001',
				'', '', 'Europe/Chisinau', 15, '{}', 1, '', now(), now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO patients (id, idnp, given_name, family_name, birth_date, sex, phone, email, blood_type, allergies, version, registration_fingerprint, created_at, updated_at)
			SELECT ('00000000-0000-4000-a000-' || lpad(i::TEXT, 12, '0'))::UUID, lpad(i::TEXT, 13, '0'), 'Maria', 'P' || i, '1980-01-01', 'female',
				'', 'p' || i || '@example.md', '', '[]', 1, '', now(), now() FROM generate_series(1, $1) AS i`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO appointments (id, doctor_id, patient_id, start_at, end_at, status, reason, fingerprint, booked_by, version, created_at, updated_at)
			SELECT gen_random_uuid(), '00000000-0000-4000-9000-000000000001', ('00000000-0000-4000-a000-' || lpad(i::TEXT, 12, '0'))::UUID,
				$2, $2::TIMESTAMPTZ + INTERVAL '15 minutes', 'booked', '', '', 'test', 1, now(), now() FROM generate_series(1, $1) AS i`, n, start); err != nil {
		t.Fatal(err)
	}
}

// More reminders due at one instant than one batch holds are decided in
// several batches, each once: the cursor keeps its place among ties.
func TestRemindersAtOneInstantSpanBatches(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	t0 := time.Now().UTC().Truncate(time.Second)
	remindersFixture(t, db, 1200, t0.Add(24*time.Hour+time.Minute))
	seen := map[string]int{}
	decide := func(evs []persistence.NotificationEvent, c persistence.NotificationContext) ([]persistence.NotificationDraft, error) {
		var out []persistence.NotificationDraft
		for _, e := range evs {
			seen[e.Key]++
			if _, ok := c.Patients[e.PatientID]; !ok {
				t.Errorf("no recipient for %s", e.PatientID)
			}
			out = append(out, persistence.NotificationDraft{ID: persistence.NewNotificationID(), Key: e.Key + ":email", PatientID: e.PatientID,
				Event: e.Event, Channel: "email", Language: "en", About: e.About, Content: []byte{1}, NextAttemptAt: e.CreatedAt})
		}
		return out, nil
	}
	minutes := []int32{24 * 60, 2 * 60}
	if n, err := db.DecideReminders(ctx, t0, minutes, 500, decide); err != nil || n != 0 {
		t.Fatalf("the first pass starts the window: %d, %v", n, err)
	}
	var got []int
	for range 4 {
		n, err := db.DecideReminders(ctx, t0.Add(2*time.Minute), minutes, 500, decide)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if got[0] != 500 || got[1] != 500 || got[2] != 200 || got[3] != 0 {
		t.Fatalf("batches %v, want 500, 500, 200, 0", got)
	}
	if len(seen) != 1200 {
		t.Fatalf("%d distinct reminders decided, want 1200", len(seen))
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s decided %d times", k, c)
		}
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM notifications WHERE event = 'appointment-reminder'`).Scan(&rows); err != nil || rows != 1200 {
		t.Fatalf("%d reminder rows (%v)", rows, err)
	}
	// The two-hour reminder falls due later; a cancelled appointment gets none.
	if _, err := db.Pool.Exec(ctx, `UPDATE appointments SET status = 'cancelled' WHERE patient_id = '00000000-0000-4000-a000-000000000001'`); err != nil {
		t.Fatal(err)
	}
	clear(seen)
	for {
		n, err := db.DecideReminders(ctx, t0.Add(23*time.Hour), minutes, 500, decide)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if len(seen) != 1199 {
		t.Fatalf("%d two-hour reminders, want 1199 (one appointment cancelled)", len(seen))
	}
}
