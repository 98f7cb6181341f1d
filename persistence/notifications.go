package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Notification states. A message is pending until a dispatcher takes it
// (sending, under a lease), then sent (the provider accepted it) and, where
// the channel reports it, delivered. dead: its last try failed; an operator
// may send it again. skipped: no longer wanted (a reminder of a cancelled
// appointment).
const (
	NotificationPending   = "pending"
	NotificationSending   = "sending"
	NotificationSent      = "sent"
	NotificationDelivered = "delivered"
	NotificationDead      = "dead"
	NotificationSkipped   = "skipped"
)

// NotificationPreferences are how a patient wants to be told.
type NotificationPreferences struct {
	PatientID  string
	Language   string
	Channels   []string
	Reminders  bool
	QuietStart int // minutes after midnight in TimeZone; QuietStart == QuietEnd: none
	QuietEnd   int
	TimeZone   string
	Version    int64
	UpdatedAt  time.Time
}

// NotificationPreferences returns the patient's stored preferences; ok
// false when they never chose (the defaults apply).
func (db *DB) NotificationPreferences(ctx context.Context, patientID string) (p NotificationPreferences, ok bool, err error) {
	err = db.Pool.QueryRow(ctx, `SELECT patient_id::TEXT, language, channels, reminders, quiet_start, quiet_end, time_zone, version, updated_at
		FROM notification_preferences WHERE patient_id = $1`, patientID).
		Scan(&p.PatientID, &p.Language, &p.Channels, &p.Reminders, &p.QuietStart, &p.QuietEnd, &p.TimeZone, &p.Version, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return NotificationPreferences{}, false, nil
	}
	return p, err == nil, classify(err)
}

// SetNotificationPreferences stores the patient's preferences through the
// patient grain's fence, at p.Version (the previous version plus one).
func (db *DB) SetNotificationPreferences(ctx context.Context, f Fence, p NotificationPreferences) error {
	return classify(db.fenced(ctx, f, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO notification_preferences (patient_id, language, channels, reminders, quiet_start, quiet_end, time_zone, version, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (patient_id) DO UPDATE SET language = excluded.language, channels = excluded.channels, reminders = excluded.reminders,
				quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, time_zone = excluded.time_zone,
				version = excluded.version, updated_at = excluded.updated_at
			WHERE notification_preferences.version = excluded.version - 1`,
			p.PatientID, p.Language, p.Channels, p.Reminders, p.QuietStart, p.QuietEnd, p.TimeZone, p.Version, p.UpdatedAt)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrStale
		}
		return err
	}))
}

// PushSubscription is a browser's Web Push subscription.
type PushSubscription struct {
	ID, Subject, Endpoint, P256DH, Auth string
	CreatedAt                           time.Time
}

// AddPushSubscription stores s for its subject. An endpoint already stored
// for the same subject is answered with the stored row (a browser
// re-subscribing); for another subject it moves to this one, since the
// browser that holds it now belongs to whoever registered it last.
func (db *DB) AddPushSubscription(ctx context.Context, s PushSubscription) (PushSubscription, error) {
	err := db.Pool.QueryRow(ctx, `INSERT INTO push_subscriptions (id, subject, endpoint, p256dh, auth, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (endpoint) DO UPDATE SET subject = excluded.subject, p256dh = excluded.p256dh, auth = excluded.auth
		RETURNING id::TEXT, created_at`, s.ID, s.Subject, s.Endpoint, s.P256DH, s.Auth, s.CreatedAt).Scan(&s.ID, &s.CreatedAt)
	return s, classify(err)
}

// DeletePushSubscription removes one of subject's subscriptions;
// ErrNotFound when subject has none by that id.
func (db *DB) DeletePushSubscription(ctx context.Context, subject, id string) error {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM push_subscriptions WHERE id = $1 AND subject = $2`, id, subject)
	if err != nil {
		return classify(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// DropPushEndpoint removes a subscription its push service has declared
// gone (404 or 410).
func (db *DB) DropPushEndpoint(ctx context.Context, endpoint string) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM push_subscriptions WHERE endpoint = $1`, endpoint)
	return classify(err)
}

// NotificationEvent is something a patient may be told about: a domain
// event the relay queued, or a time a sweep found due. Key makes the
// messages decided from it unique (a repeat decides nothing new).
type NotificationEvent struct {
	Key       string
	Event     string
	PatientID string
	About     string
	Data      json.RawMessage
	CreatedAt time.Time
}

// NotificationRecipient is a patient as the notifier sees them.
type NotificationRecipient struct {
	PatientID   string
	GivenName   string
	Email       string
	Phone       string
	Preferences NotificationPreferences
	Chosen      bool // Preferences were stored, not defaults
	Push        []PushSubscription
}

// NotificationDoctor is a doctor with the clinic whose time zone their
// appointments are shown in.
type NotificationDoctor struct {
	Name, ClinicName, TimeZone string
}

// NotificationContext is what deciding a batch of events needs to know.
type NotificationContext struct {
	Patients map[string]NotificationRecipient
	Doctors  map[string]NotificationDoctor
}

// NotificationDraft is one message decided: written pending, due at NextAttemptAt.
type NotificationDraft struct {
	ID            string
	Key           string
	PatientID     string // "" for account mail
	Event         string
	Channel       string
	Language      string
	About         string
	Content       []byte // sealed
	NextAttemptAt time.Time
	// Skip writes the message as skipped (decided, not sent: a reminder
	// that quiet hours would push past its appointment).
	Skip bool
}

// Decider turns events into messages. It must be pure: the transaction
// it runs in may be retried.
type Decider func(evs []NotificationEvent, c NotificationContext) ([]NotificationDraft, error)

// DecideQueuedNotifications takes up to limit events the relay queued
// (SKIP LOCKED: other members take others), writes the messages decide
// makes of them and deletes them, in one transaction.
func (db *DB) DecideQueuedNotifications(ctx context.Context, limit int, decide Decider) (int, error) {
	var n int
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::TEXT, event, patient_id::TEXT, about, data, created_at FROM notification_events
			ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NotificationEvent])
		if err != nil || len(evs) == 0 {
			n = 0
			return err
		}
		ids := make([]string, len(evs))
		for i, e := range evs {
			ids[i] = e.Key
			evs[i].Key = "event:" + e.Key
		}
		if err := decideIn(ctx, tx, evs, decide); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM notification_events WHERE id = ANY($1::TEXT[]::UUID[])`, ids)
		n = len(evs)
		return err
	})
	return n, classify(err)
}

// decideIn loads what decide needs about evs' patients and doctors, and
// writes the drafts it returns (a draft whose key exists writes nothing).
func decideIn(ctx context.Context, tx pgx.Tx, evs []NotificationEvent, decide Decider) error {
	var patients, doctors []string
	for _, e := range evs {
		patients = append(patients, e.PatientID)
		var d struct {
			DoctorID string `json:"doctor_id"`
		}
		if json.Unmarshal(e.Data, &d) == nil && d.DoctorID != "" {
			doctors = append(doctors, d.DoctorID)
		}
	}
	c, err := notificationContext(ctx, tx, patients, doctors)
	if err != nil {
		return err
	}
	drafts, err := decide(evs, c)
	if err != nil {
		return err
	}
	return insertDrafts(ctx, tx, drafts)
}

func notificationContext(ctx context.Context, tx pgx.Tx, patients, doctors []string) (NotificationContext, error) {
	c := NotificationContext{Patients: map[string]NotificationRecipient{}, Doctors: map[string]NotificationDoctor{}}
	rows, err := tx.Query(ctx, `SELECT p.id::TEXT, p.given_name, p.email, p.phone, np.patient_id IS NOT NULL,
			coalesce(np.language, ''), coalesce(np.channels, '{}'), coalesce(np.reminders, TRUE),
			coalesce(np.quiet_start, 0), coalesce(np.quiet_end, 0), coalesce(np.time_zone, ''), coalesce(np.version, 0)
		FROM patients p LEFT JOIN notification_preferences np ON np.patient_id = p.id
		WHERE p.id = ANY($1::TEXT[]::UUID[])`, uuids(patients))
	if err != nil {
		return c, err
	}
	var r NotificationRecipient
	_, err = pgx.ForEachRow(rows, []any{&r.PatientID, &r.GivenName, &r.Email, &r.Phone, &r.Chosen, &r.Preferences.Language,
		&r.Preferences.Channels, &r.Preferences.Reminders, &r.Preferences.QuietStart, &r.Preferences.QuietEnd,
		&r.Preferences.TimeZone, &r.Preferences.Version}, func() error {
		r.Preferences.PatientID = r.PatientID
		c.Patients[r.PatientID] = r
		return nil
	})
	if err != nil {
		return c, err
	}
	rows, err = tx.Query(ctx, `SELECT id::TEXT, subject, endpoint, p256dh, auth, created_at FROM push_subscriptions
		WHERE subject = ANY($1::TEXT[]) ORDER BY created_at, id`, patients)
	if err != nil {
		return c, err
	}
	subs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[PushSubscription])
	if err != nil {
		return c, err
	}
	for _, s := range subs {
		if r, ok := c.Patients[s.Subject]; ok {
			r.Push = append(r.Push, s)
			c.Patients[s.Subject] = r
		}
	}
	if len(doctors) == 0 {
		return c, nil
	}
	rows, err = tx.Query(ctx, `SELECT d.id::TEXT, d.given_name || ' ' || d.family_name, c.name, c.time_zone
		FROM doctors d JOIN clinics c ON c.id = d.clinic_id WHERE d.id = ANY($1::TEXT[]::UUID[])`, uuids(doctors))
	if err != nil {
		return c, err
	}
	var id string
	var d NotificationDoctor
	_, err = pgx.ForEachRow(rows, []any{&id, &d.Name, &d.ClinicName, &d.TimeZone}, func() error {
		c.Doctors[id] = d
		return nil
	})
	return c, err
}

// insertDrafts writes drafts in one statement. A patient erased since the
// decision gets none (the join), and a key already written stays as it is.
func insertDrafts(ctx context.Context, tx pgx.Tx, drafts []NotificationDraft) error {
	if len(drafts) == 0 {
		return nil
	}
	n := len(drafts)
	ids, keys, patients, events, channels, langs, abouts := make([]string, n), make([]string, n), make([]*string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	contents, states, due := make([][]byte, n), make([]string, n), make([]time.Time, n)
	now := time.Now().UTC()
	for i, d := range drafts {
		ids[i], keys[i], events[i], channels[i], langs[i], abouts[i] = d.ID, d.Key, d.Event, d.Channel, d.Language, d.About
		if d.PatientID != "" {
			patients[i] = &drafts[i].PatientID
		}
		contents[i], due[i], states[i] = d.Content, d.NextAttemptAt.UTC(), NotificationPending
		if d.Skip {
			states[i] = NotificationSkipped
		}
	}
	_, err := tx.Exec(ctx, `WITH written AS (
			INSERT INTO notifications (id, dedup_key, patient_id, event, channel, language, about, state,
				attempts, next_attempt_at, last_error, provider_id, created_at)
			SELECT u.id, u.key, u.patient, u.event, u.channel, u.lang, u.about, u.state, 0, u.due, '', '', $11
			FROM unnest($1::TEXT[]::UUID[], $2::TEXT[], $3::TEXT[]::UUID[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
				$9::TEXT[], $10::TIMESTAMPTZ[]) AS u (id, key, patient, event, channel, lang, about, state, due)
			WHERE u.patient IS NULL OR EXISTS (SELECT 1 FROM patients p WHERE p.id = u.patient)
			ON CONFLICT (dedup_key) DO NOTHING
			RETURNING id, state)
		INSERT INTO notification_contents (id, content_sealed)
		SELECT c.id, c.content FROM unnest($1::TEXT[]::UUID[], $8::BYTEA[]) AS c (id, content)
		JOIN written w ON w.id = c.id AND w.state = 'pending'`,
		ids, keys, patients, events, channels, langs, abouts, contents, states, due, now)
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	return nil
}

// QueueNotification writes one draft on its own (account mail).
func (db *DB) QueueNotification(ctx context.Context, d NotificationDraft) error {
	return classify(db.inTx(ctx, func(tx pgx.Tx) error { return insertDrafts(ctx, tx, []NotificationDraft{d}) }))
}

// queueNotificationEvents writes the events a relay batch holds for the
// notifier, for patients that still exist.
func queueNotificationEvents(q *pgx.Batch, evs []NotificationEvent) {
	if len(evs) == 0 {
		return
	}
	n := len(evs)
	ids, events, patients, abouts, datas, ats := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
	for i, e := range evs {
		ids[i], events[i], patients[i], abouts[i], datas[i], ats[i] = e.Key, e.Event, e.PatientID, e.About, string(e.Data), e.CreatedAt.UTC()
	}
	q.Queue(`INSERT INTO notification_events (id, event, patient_id, about, data, created_at)
		SELECT u.id, u.event, u.patient, u.about, u.data::JSONB, u.at
		FROM unnest($1::TEXT[]::UUID[], $2::TEXT[], $3::TEXT[]::UUID[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[]) AS u (id, event, patient, about, data, at)
		WHERE EXISTS (SELECT 1 FROM patients p WHERE p.id = u.patient)
		ON CONFLICT (id) DO NOTHING`, ids, events, patients, abouts, datas, ats)
}

// sweepCursor is a position in a sweep's order (at, id, n).
type sweepCursor struct {
	At time.Time
	ID string
	N  int32
}

// lastOf is the position after everything at t: a sweep that decided all
// due by t resumes after it.
func lastOf(t time.Time) sweepCursor {
	return sweepCursor{At: t.UTC(), ID: "ffffffff-ffff-ffff-ffff-ffffffffffff", N: 1 << 30}
}

// lockCursor reads (creating it at start) a sweep's cursor and locks it
// for the transaction: one member decides a window at a time.
func lockCursor(ctx context.Context, tx pgx.Tx, name string, start time.Time) (sweepCursor, error) {
	first := lastOf(start)
	if _, err := tx.Exec(ctx, `INSERT INTO notification_cursors (name, at, after_id, after_n) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING`,
		name, first.At, first.ID, first.N); err != nil {
		return sweepCursor{}, err
	}
	var c sweepCursor
	err := tx.QueryRow(ctx, `SELECT at, after_id::TEXT, after_n FROM notification_cursors WHERE name = $1 FOR UPDATE`, name).Scan(&c.At, &c.ID, &c.N)
	return c, err
}

func moveCursor(ctx context.Context, tx pgx.Tx, name string, c sweepCursor) error {
	_, err := tx.Exec(ctx, `UPDATE notification_cursors SET at = $2, after_id = $3, after_n = $4 WHERE name = $1`, name, c.At.UTC(), c.ID, c.N)
	return err
}

// DueReminder is an appointment whose reminder is due.
type DueReminder struct {
	AppointmentID, PatientID, DoctorID string
	Start, End                         time.Time
	Minutes                            int32
	Due                                time.Time
}

// DecideReminders finds the reminders that fell due after the sweep's
// cursor and by now: each booked appointment, for each of its clinic's
// offsets (defaultMinutes when the clinic set none), once. It hands up to
// limit of them to decide as events, in (due, appointment, offset) order,
// writes the messages and moves the cursor past the last, in one
// transaction; the next call goes on from there. The first call starts at now.
func (db *DB) DecideReminders(ctx context.Context, now time.Time, defaultMinutes []int32, limit int, decide Decider) (int, error) {
	var n int
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		n = 0
		from, err := lockCursor(ctx, tx, "reminders", now)
		if err != nil || !from.At.Before(now) {
			return err
		}
		// Every offset in use: the defaults and each clinic's own.
		var offsets []int32
		if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT m), '{}') FROM (
				SELECT unnest(minutes) AS m FROM clinic_reminders UNION SELECT unnest($1::INT[])) AS o`, defaultMinutes).Scan(&offsets); err != nil {
			return err
		}
		// For each offset m, the appointments whose reminder falls due in
		// [from, now] start in [from+m, now+m]: one narrow range of the
		// booked-start index per offset, whatever the calendar holds.
		rows, err := tx.Query(ctx, `SELECT a.id::TEXT, a.patient_id::TEXT, a.doctor_id::TEXT, a.start_at, a.end_at, o.m,
				a.start_at - o.m * INTERVAL '1 minute' AS due
			FROM unnest($3::INT[]) AS o (m),
			LATERAL (SELECT id, patient_id, doctor_id, start_at, end_at FROM appointments
				WHERE status = 'booked' AND start_at > $2
					AND start_at >= $1::TIMESTAMPTZ + o.m * INTERVAL '1 minute' AND start_at <= $2::TIMESTAMPTZ + o.m * INTERVAL '1 minute') AS a
			JOIN doctors d ON d.id = a.doctor_id
			LEFT JOIN clinic_reminders r ON r.clinic_id = d.clinic_id
			WHERE o.m = ANY(coalesce(r.minutes, $4::INT[]))
				AND (a.start_at - o.m * INTERVAL '1 minute', a.id, o.m) > ($1::TIMESTAMPTZ, $5::UUID, $6::INT)
			ORDER BY due, a.id, o.m LIMIT $7`, from.At, now, offsets, defaultMinutes, from.ID, from.N, limit)
		if err != nil {
			return err
		}
		due, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DueReminder])
		if err != nil {
			return err
		}
		cursor := lastOf(now)
		if len(due) == limit { // more may wait: go on after the last decided
			last := due[len(due)-1]
			cursor = sweepCursor{At: last.Due, ID: last.AppointmentID, N: last.Minutes}
		}
		evs := make([]NotificationEvent, len(due))
		for i, r := range due {
			data, _ := json.Marshal(map[string]any{"appointment_id": r.AppointmentID, "doctor_id": r.DoctorID,
				"start": r.Start, "end": r.End, "minutes": r.Minutes})
			evs[i] = NotificationEvent{Key: fmt.Sprintf("reminder:%s:%d:%d", r.AppointmentID, r.Minutes, r.Start.Unix()),
				Event: "appointment-reminder", PatientID: r.PatientID, About: r.AppointmentID, Data: data, CreatedAt: r.Due}
		}
		if len(evs) > 0 {
			if err := decideIn(ctx, tx, evs, decide); err != nil {
				return err
			}
		}
		n = len(evs)
		return moveCursor(ctx, tx, "reminders", cursor)
	})
	return n, classify(err)
}

// DecidePrescriptionEnds finds the active prescriptions that will end
// within before (prescription-ending) and those whose end passed
// (prescription-ended) after the sweep's cursor and by now, as
// DecideReminders does.
func (db *DB) DecidePrescriptionEnds(ctx context.Context, now time.Time, before time.Duration, limit int, decide Decider) (int, error) {
	var n int
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		n = 0
		from, err := lockCursor(ctx, tx, "prescriptions", now)
		if err != nil || !from.At.Before(now) {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id::TEXT, patient_id::TEXT, expires_at, k, at FROM (
				SELECT id, patient_id, expires_at, 0 AS k, expires_at - $3::INT * INTERVAL '1 second' AS at FROM prescriptions
				WHERE status = 'active' AND expires_at > $2
					AND expires_at >= $1::TIMESTAMPTZ + $3::INT * INTERVAL '1 second' AND expires_at <= $2::TIMESTAMPTZ + $3::INT * INTERVAL '1 second'
				UNION ALL
				SELECT id, patient_id, expires_at, 1, expires_at FROM prescriptions
				WHERE status IN ('active', 'expired') AND expires_at >= $1 AND expires_at <= $2
			) AS due WHERE (at, id, k) > ($1::TIMESTAMPTZ, $4::UUID, $5::INT) ORDER BY at, id, k LIMIT $6`,
			from.At, now, int(before.Seconds()), from.ID, from.N, limit)
		if err != nil {
			return err
		}
		var evs []NotificationEvent
		var id, patient string
		var k int32
		var expires, at time.Time
		cursor := lastOf(now)
		_, err = pgx.ForEachRow(rows, []any{&id, &patient, &expires, &k, &at}, func() error {
			kind := [2]string{"prescription-ending", "prescription-ended"}[k]
			data, _ := json.Marshal(map[string]any{"prescription_id": id, "expires_at": expires})
			evs = append(evs, NotificationEvent{Key: kind + ":" + id, Event: kind, PatientID: patient, About: id, Data: data, CreatedAt: at})
			cursor = sweepCursor{At: at, ID: id, N: k}
			return nil
		})
		if err != nil {
			return err
		}
		if len(evs) < limit {
			cursor = lastOf(now)
		}
		if len(evs) > 0 {
			if err := decideIn(ctx, tx, evs, decide); err != nil {
				return err
			}
		}
		n = len(evs)
		return moveCursor(ctx, tx, "prescriptions", cursor)
	})
	return n, classify(err)
}

// Notification is one message and its delivery state.
type Notification struct {
	ID            string
	PatientID     string
	Event         string
	Channel       string
	Language      string
	About         string
	State         string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	ProviderID    string
	CreatedAt     time.Time
	SentAt        *time.Time
	DeliveredAt   *time.Time
	// Content is the sealed message: read by a claim only.
	Content []byte
}

// notificationColumns are a Notification's, but for its content.
const notificationColumns = `id::TEXT, coalesce(patient_id::TEXT, ''), event, channel, language, about, state, attempts,
	next_attempt_at, last_error, provider_id, created_at, sent_at, delivered_at`

// ClaimNotifications takes up to limit messages due by now (pending, or
// sending under a lease that ran out: its member died mid-send), counts
// the attempt and leases them until now+lease. SKIP LOCKED shares the
// queue among members.
func (db *DB) ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Notification, error) {
	var out []Notification
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// = ANY(ARRAY(...)): the locking subquery runs once, first; as an
		// IN it may be planned as a join that rescans the queue.
		rows, err := tx.Query(ctx, `WITH claimed AS (UPDATE notifications SET state = 'sending', attempts = attempts + 1, lease_until = $2
				WHERE id = ANY(ARRAY(SELECT id FROM notifications
					WHERE state IN ('pending', 'sending') AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
					ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED))
				RETURNING `+notificationColumns+`)
			SELECT claimed.*, coalesce(c.content_sealed, ''::BYTEA) FROM claimed LEFT JOIN notification_contents c ON c.id = claimed.id::UUID`,
			now.UTC(), now.Add(lease).UTC(), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Notification])
		return err
	})
	return out, classify(err)
}

// NotificationOutcome is what became of one try of a message.
type NotificationOutcome struct {
	ID string
	// State: sent; pending (failed, tried again at Next; or put back
	// untried with GiveBack, its attempt not counted); dead; skipped.
	State      string
	GiveBack   bool
	ProviderID string
	Error      string
	At, Next   time.Time
}

// RecordNotificationOutcomes records a dispatcher pass's tries in one
// statement, for the messages still leased (sending). A sent or skipped
// message forgets its content: the address and the text are needed no
// longer (the row keeps what was sent when, over which channel).
func (db *DB) RecordNotificationOutcomes(ctx context.Context, outs []NotificationOutcome) error {
	if len(outs) == 0 {
		return nil
	}
	n := len(outs)
	ids, states, providers, whys := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	giveBack, ats, nexts := make([]bool, n), make([]time.Time, n), make([]time.Time, n)
	for i, o := range outs {
		ids[i], states[i], providers[i], whys[i] = o.ID, o.State, o.ProviderID, truncateText(o.Error, 500)
		giveBack[i], ats[i], nexts[i] = o.GiveBack, o.At.UTC(), o.Next.UTC()
	}
	_, err := db.Pool.Exec(ctx, `WITH recorded AS (UPDATE notifications AS n SET state = u.state,
				attempts = CASE WHEN u.give_back THEN greatest(n.attempts - 1, 0) ELSE n.attempts END,
				provider_id = CASE WHEN u.state = 'sent' THEN u.provider ELSE n.provider_id END,
				sent_at = CASE WHEN u.state = 'sent' THEN u.at ELSE n.sent_at END,
				next_attempt_at = CASE WHEN u.state = 'pending' THEN u.next ELSE n.next_attempt_at END,
				last_error = u.why, lease_until = NULL
			FROM unnest($1::TEXT[]::UUID[], $2::TEXT[], $3::BOOL[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[], $7::TIMESTAMPTZ[])
				AS u (id, state, give_back, provider, why, at, next)
			WHERE n.id = u.id AND n.state = 'sending'
			RETURNING n.id, n.state)
		DELETE FROM notification_contents WHERE id IN (SELECT id FROM recorded WHERE state IN ('sent', 'skipped'))`,
		ids, states, giveBack, providers, whys, ats, nexts)
	return classify(err)
}

// NotificationDelivered records a delivery receipt for the message the
// channel's provider knows as providerID.
func (db *DB) NotificationDelivered(ctx context.Context, channel, providerID string, at time.Time) (bool, error) {
	tag, err := db.Pool.Exec(ctx, `UPDATE notifications SET state = 'delivered', delivered_at = $3
		WHERE provider_id = $2 AND channel = $1 AND state IN ('sent', 'sending')`, channel, providerID, at.UTC())
	return err == nil && tag.RowsAffected() > 0, classify(err)
}

// BookedAppointmentStarts maps those of ids that are still booked to
// their start: a reminder for any other is not sent.
func (db *DB) BookedAppointmentStarts(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	rows, err := db.Pool.Query(ctx, `SELECT id::TEXT, start_at FROM appointments WHERE id = ANY($1::TEXT[]::UUID[]) AND status = 'booked'`, uuids(ids))
	if err != nil {
		return nil, classify(err)
	}
	var id string
	var start time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &start}, func() error { out[id] = start; return nil })
	return out, classify(err)
}

// PatientNotifications lists a patient's messages, newest first, before
// the cursor (created_at, id) when set.
func (db *DB) PatientNotifications(ctx context.Context, patientID string, before time.Time, beforeID string, limit int) ([]Notification, error) {
	if before.IsZero() {
		before, beforeID = time.Now().Add(24*365*time.Hour), "ffffffff-ffff-ffff-ffff-ffffffffffff"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+notificationColumns+`, ''::BYTEA FROM notifications
		WHERE patient_id = $1 AND (created_at, id) < ($2, $3::UUID) ORDER BY created_at DESC, id DESC LIMIT $4`,
		patientID, before.UTC(), beforeID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Notification])
	return out, classify(err)
}

// NotificationsByState lists messages in a state ("": all), oldest first, after
// the cursor (created_at, id) when set.
func (db *DB) NotificationsByState(ctx context.Context, state string, after time.Time, afterID string, limit int) ([]Notification, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+notificationColumns+`, ''::BYTEA FROM notifications
		WHERE ($1 = '' OR state = $1) AND (created_at, id) > ($2, $3::UUID) ORDER BY created_at, id LIMIT $4`, state, after.UTC(), afterID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Notification])
	return out, classify(err)
}

// RetryNotification sends a dead message again from its first try, at
// once; ErrNotFound when no message has that id, ErrWrongState when it is
// not dead. The audit event in ctx (persistence.WithAudit) is written with it.
func (db *DB) RetryNotification(ctx context.Context, id string, now time.Time) (Notification, error) {
	var n Notification
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+notificationColumns+`, ''::BYTEA FROM notifications WHERE id = $1 FOR UPDATE`, id)
		if err != nil {
			return err
		}
		n, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Notification])
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if n.State != NotificationDead {
			return ErrWrongState
		}
		_, err = tx.Exec(ctx, `UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = $2, last_error = '' WHERE id = $1`, id, now.UTC())
		n.State, n.Attempts, n.NextAttemptAt, n.LastError = NotificationPending, 0, now, ""
		return err
	})
	return n, classify(err)
}

// NotificationQueue is one channel's waiting messages.
type NotificationQueue struct {
	Channel   string
	Waiting   int64     // pending or sending
	OldestDue time.Time // zero when none waits
	Dead      int64
}

// NotificationQueues reports every channel's queue.
func (db *DB) NotificationQueues(ctx context.Context) (map[string]NotificationQueue, error) {
	rows, err := db.Pool.Query(ctx, `SELECT channel, count(*) FILTER (WHERE state IN ('pending', 'sending')),
			min(next_attempt_at) FILTER (WHERE state IN ('pending', 'sending')), count(*) FILTER (WHERE state = 'dead')
		FROM notifications WHERE state IN ('pending', 'sending', 'dead') GROUP BY channel`)
	if err != nil {
		return nil, classify(err)
	}
	out := map[string]NotificationQueue{}
	var q NotificationQueue
	var oldest *time.Time
	_, err = pgx.ForEachRow(rows, []any{&q.Channel, &q.Waiting, &oldest, &q.Dead}, func() error {
		q.OldestDue = time.Time{}
		if oldest != nil {
			q.OldestDue = *oldest
		}
		out[q.Channel] = q
		return nil
	})
	return out, classify(err)
}

// ClinicReminders is a clinic's reminder offsets in minutes; ok false
// when it set none.
func (db *DB) ClinicReminders(ctx context.Context, clinicID string) (minutes []int32, ok bool, err error) {
	err = db.Pool.QueryRow(ctx, `SELECT minutes FROM clinic_reminders WHERE clinic_id = $1`, clinicID).Scan(&minutes)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return minutes, err == nil, classify(err)
}

// SetClinicReminders sets a clinic's reminder offsets (nil: back to the
// node's); ErrNotFound for an unknown clinic. The audit event in ctx is
// written with it.
func (db *DB) SetClinicReminders(ctx context.Context, clinicID string, minutes []int32, at time.Time) error {
	return classify(db.inTx(ctx, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clinics WHERE id = $1)`, clinicID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return ErrNotFound
		}
		if minutes == nil {
			_, err := tx.Exec(ctx, `DELETE FROM clinic_reminders WHERE clinic_id = $1`, clinicID)
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO clinic_reminders (clinic_id, minutes, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (clinic_id) DO UPDATE SET minutes = excluded.minutes, updated_at = excluded.updated_at`, clinicID, minutes, at.UTC())
		return err
	}))
}

// RememberDevice records that account signed in from the device whose
// cookie hashes to hash. It reports whether the device is new and whether
// the account had signed in from another device before (only then is a
// new device worth telling: the first sign-in is not news).
func (db *DB) RememberDevice(ctx context.Context, accountID string, hash []byte, userAgent string, at time.Time) (isNew, hadOthers bool, err error) {
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO known_devices (account_id, device_hash, user_agent, first_seen) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account_id, device_hash) DO NOTHING`, accountID, hash, truncateText(userAgent, 256), at.UTC())
		if err != nil {
			return err
		}
		isNew = tag.RowsAffected() == 1
		if !isNew {
			return nil
		}
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM known_devices WHERE account_id = $1 AND device_hash <> $2)`, accountID, hash).Scan(&hadOthers)
	})
	return isNew, hadOthers, classify(err)
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// NewNotificationID is a fresh message id.
func NewNotificationID() string { return uuid.NewString() }
