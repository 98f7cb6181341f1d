package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/notify/notifytest"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
)

// providers are the three channels' test servers, real protocols on loopback.
type providers struct {
	smtp *notifytest.SMTPServer
	smpp *notifytest.SMPPServer
	push *notifytest.PushService
}

func startProviders(t *testing.T) *providers {
	return &providers{smtp: notifytest.StartSMTP(t, ""), smpp: notifytest.StartSMPP(t, ""), push: notifytest.StartPush(t, "")}
}

// notifyingServer is a node whose notifications go to p, on clock, with
// retries, breakers and polls shortened for a test.
func notifyingServer(t *testing.T, p *providers, clock *testClock) *testServer {
	t.Helper()
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) {
		c.Notify = &notifyConfig{
			Email: notify.Email{Addr: p.smtp.Addr, From: "caregrid <no-reply@hospital.example>"},
			SMS:   &notify.SMS{Addr: p.smpp.Addr, SystemID: p.smpp.SystemID, Password: p.smpp.Password, Source: "caregrid"},
			Push:  true, PushContact: "mailto:ops@hospital.example",
			Language: "ro", PortalURL: "https://portal.hospital.example",
			Retry: notify.Retry{Attempts: 20, First: 100 * time.Millisecond, Max: 300 * time.Millisecond},
			Trip:  3, Open: 500 * time.Millisecond, Idle: 20 * time.Millisecond, Now: clock.Now,
		}
	})
	r := s.do("GET", "/v1/push/vapid-public-key", "", nil)
	expect(t, "the VAPID key", r, 200)
	p.push.VAPIDPublic = r.json(t)["public_key"].(string)
	return s
}

// counts are how many distinct messages each provider holds.
func (p *providers) counts() [3]int {
	return [3]int{len(p.smtp.Mails()), len(p.smpp.Messages()), len(p.push.Messages())}
}

// await waits until each provider holds want messages, then checks that
// no more come.
func (p *providers) await(t *testing.T, what string, want [3]int) {
	t.Helper()
	await.Until(t, what, 20*time.Second, func() bool { return p.counts() == want })
	await.Throughout(t, "no more than "+what, 300*time.Millisecond, func() bool { return p.counts() == want })
}

// lastPush is the newest push message's payload.
func (p *providers) lastPush(t *testing.T) map[string]string {
	t.Helper()
	ms := p.push.Messages()
	var out map[string]string
	if err := json.Unmarshal(ms[len(ms)-1].Payload, &out); err != nil {
		t.Fatalf("push payload %q: %v", ms[len(ms)-1].Payload, err)
	}
	return out
}

// TestNotificationsReachThePatientOnEveryChannel: a booking, a reschedule
// and a cancel each produce exactly one message per chosen channel,
// received by real SMTP, SMPP and Web Push servers, in the patient's
// language, naming no clinical data on SMS and push; the patient sees
// them with their delivery state. A reminder fires when the clock reaches
// its time, and not for a cancelled appointment.
func TestNotificationsReachThePatientOnEveryChannel(t *testing.T) {
	p := startProviders(t)
	clock := &testClock{}
	s := notifyingServer(t, p, clock)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	pid := r.json(t)["id"].(string)
	patient := s.token(messages.Role_ROLE_PATIENT, pid)

	r = s.do("GET", "/v1/patients/"+pid+"/notification-preferences", patient, nil)
	expect(t, "the defaults", r, 200)
	if got := r.json(t); got["chosen"] != false || got["language"] != "ro" || got["reminders"] != true {
		t.Fatalf("default preferences = %s", r.body)
	}
	prefs := map[string]any{"language": "ru", "channels": []string{"email", "sms", "push"}, "reminders": true,
		"quiet_hours": map[string]string{"start": "00:00", "end": "00:00"}, "time_zone": "Europe/Chisinau"}
	expect(t, "choose Russian, every channel, no quiet hours", s.do("PUT", "/v1/patients/"+pid+"/notification-preferences", patient, prefs), 200)
	sub := p.push.Subscribe()
	r = s.do("POST", "/v1/me/push-subscriptions", patient, map[string]any{"endpoint": sub.Endpoint, "expirationTime": nil,
		"keys": map[string]string{"p256dh": sub.P256DH, "auth": sub.Auth}})
	expect(t, "subscribe this browser", r, 201)

	doc := workingDoctor(t, s)
	at := localDay(t, 3)
	book := func(start time.Time) string {
		t.Helper()
		r := s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doc, "patient_id": pid, "start": rfc(start),
			"duration_minutes": 15, "reason": "chest pain"})
		expect(t, "book", r, 201)
		return r.json(t)["id"].(string)
	}
	a := book(at)
	p.await(t, "one confirmation per channel", [3]int{1, 1, 1})
	mail := p.smtp.Mails()[0]
	if mail.To != "maria@example.md" || !strings.Contains(mail.Subject, "подтверждена") || !strings.Contains(mail.Text, "Munteanu") ||
		!strings.Contains(mail.HTML, `lang="ru"`) || !strings.Contains(mail.HTML, "Открыть caregrid") || mail.Language != "ru" {
		t.Fatalf("the booking's email: %+v", mail)
	}
	sms := p.smpp.Messages()[0]
	if sms.To != "+37369000001" || sms.From != "caregrid" || !strings.Contains(sms.Text, "подтверждена") {
		t.Fatalf("the booking's SMS: %+v", sms)
	}
	if push := p.lastPush(t); !strings.Contains(push["body"], "подтверждена") || push["url"] != "https://portal.hospital.example" {
		t.Fatalf("the booking's push: %v", push)
	}
	for _, text := range []string{mail.Text, mail.HTML, sms.Text, string(p.push.Messages()[0].Payload)} {
		if strings.Contains(text, "chest pain") {
			t.Fatalf("a message names the appointment's reason: %q", text)
		}
	}

	// The SMS gateway's receipt marks it delivered; the patient sees all three.
	await.Until(t, "the SMS receipt", 10*time.Second, func() bool {
		var n int
		_ = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE patient_id = $1 AND channel = 'sms' AND state = 'delivered'`, pid).Scan(&n)
		return n == 1
	})
	r = s.do("GET", "/v1/patients/"+pid+"/notifications", patient, nil)
	expect(t, "the patient's notifications", r, 200)
	var list struct {
		Notifications []map[string]any `json:"notifications"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, n := range list.Notifications {
		if n["event"] != "appointment-booked" || n["about"] != a || n["sent_at"] == nil {
			t.Fatalf("a notification of the booking: %v", n)
		}
		states[n["channel"].(string)] = n["state"].(string)
	}
	if len(list.Notifications) != 3 || states["email"] != "sent" || states["sms"] != "delivered" || states["push"] != "sent" {
		t.Fatalf("the patient's notifications: %s", r.body)
	}
	if strings.Contains(string(r.body), "maria@example.md") || strings.Contains(string(r.body), "Munteanu") {
		t.Fatalf("the list shows a message's content: %s", r.body)
	}

	// A reschedule, then a cancel by the patient.
	expect(t, "reschedule", s.do("POST", "/v1/appointments/"+a+"/reschedule", desk, map[string]any{"start": rfc(at.Add(time.Hour))}), 200)
	p.await(t, "one message per channel about the new time", [3]int{2, 2, 2})
	if m := p.smtp.Mails()[1]; !strings.Contains(m.Subject, "перенесена") {
		t.Fatalf("the reschedule's email: %+v", m)
	}
	expect(t, "the patient cancels", s.do("POST", "/v1/appointments/"+a+"/cancel", patient, nil), 200)
	p.await(t, "one message per channel about the cancel", [3]int{3, 3, 3})
	if m := p.smtp.Mails()[2]; !strings.Contains(m.Subject, "отменена") || !strings.Contains(m.Text, "по вашей просьбе") {
		t.Fatalf("the cancel's email: %+v", m)
	}

	// Reminders: the sweep starts its window now; one appointment stays
	// booked, another is cancelled; the clock moves to a minute past the
	// day-before reminder.
	b, c := book(at.Add(2*time.Hour)), book(at.Add(3*time.Hour))
	p.await(t, "the two bookings' confirmations", [3]int{5, 5, 5})
	expect(t, "cancel the third", s.do("POST", "/v1/appointments/"+c+"/cancel", desk, nil), 200)
	p.await(t, "the cancel's messages", [3]int{6, 6, 6})
	clock.Shift(time.Until(at.Add(2*time.Hour-24*time.Hour)) + time.Minute)
	p.await(t, "one reminder per channel, for the booked one only", [3]int{7, 7, 7})
	if m := p.smtp.Mails()[6]; !strings.Contains(m.Subject, "Напоминание") {
		t.Fatalf("the reminder: %+v", m)
	}
	var reminded []string
	rows, err := s.db.Pool.Query(context.Background(), `SELECT DISTINCT about FROM notifications WHERE event = 'appointment-reminder'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		reminded = append(reminded, id)
	}
	if len(reminded) != 1 || reminded[0] != b {
		t.Fatalf("reminded %v, want only %s", reminded, b)
	}
}

// TestNotificationsWaitOutAProviderOutage: while the mail relay refuses
// and the SMS gateway is down, messages wait (pending, not dead), each
// channel's breaker opens and /metrics says so; when the providers come
// back every message is delivered once.
func TestNotificationsWaitOutAProviderOutage(t *testing.T) {
	p := startProviders(t)
	// Midday in Chisinau, outside the default quiet hours (22:00-08:00)
	// that hold SMS back.
	clock := &testClock{}
	clock.Shift(time.Until(localDay(t, 1).Add(2 * time.Hour)))
	s := notifyingServer(t, p, clock)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doc := workingDoctor(t, s)
	p.smtp.Fail(true)
	p.smpp.Stop()
	const n = 6
	for i := range n {
		r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
		expect(t, "register", r, 201)
		pid := r.json(t)["id"].(string)
		expect(t, "book", s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doc, "patient_id": pid,
			"start": rfc(localDay(t, 3).Add(time.Duration(i) * 15 * time.Minute)), "duration_minutes": 15}), 201)
	}
	metric := func(name string) string {
		resp, err := http.Get(s.base + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+" ") {
				return strings.TrimPrefix(line, name+" ")
			}
		}
		return ""
	}
	for _, ch := range []string{"email", "sms"} {
		await.Until(t, "the "+ch+" breaker to open", 20*time.Second, func() bool {
			return metric(fmt.Sprintf(`caregrid_notifications_breaker_open{channel=%q}`, ch)) == "1"
		})
	}
	var dead, waiting int
	await.Until(t, "every message decided and waiting", 20*time.Second, func() bool {
		err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state IN ('pending', 'sending'))
			FROM notifications`).Scan(&dead, &waiting)
		return err == nil && waiting == 2*n
	})
	await.Throughout(t, "nothing dead while the providers are down", time.Second, func() bool {
		err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state IN ('pending', 'sending'))
			FROM notifications`).Scan(&dead, &waiting)
		return err == nil && dead == 0 && waiting == 2*n
	})
	if got := metric(`caregrid_notifications_waiting{channel="email"}`); got != fmt.Sprint(n) {
		t.Fatalf("caregrid_notifications_waiting{email} = %q, want %d", got, n)
	}
	p.smtp.Fail(false)
	p.smpp.Restart()
	p.await(t, "every message once the providers are back", [3]int{n, n, 0})
	if d := p.smtp.Duplicates(); d != 0 {
		t.Fatalf("%d emails arrived twice", d)
	}
	await.Until(t, "the breakers to close", 10*time.Second, func() bool {
		return metric(`caregrid_notifications_breaker_open{channel="email"}`) == "0" && metric(`caregrid_notifications_breaker_open{channel="sms"}`) == "0"
	})
}

// TestAMemberKilledMidSendDeliversOnceItRestarts: the relay has the mail
// but the member dies (kill -9) before it hears so. The message stays
// leased; the restarted member sends it again when the lease ends, under
// the same Message-ID, so the relay keeps one copy.
func TestAMemberKilledMidSendDeliversOnceItRestarts(t *testing.T) {
	relay := notifytest.StartSMTP(t, "")
	relay.Hold()
	proc, db := startProcess(t, "--smtp-addr", relay.Addr, "--smtp-from", "caregrid <no-reply@hospital.example>", "--notification-lease", "4s")
	master := masterOf(t, proc)
	sealer, err := notify.NewSealer(master)
	if err != nil {
		t.Fatal(err)
	}
	templates, err := notify.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	d := notify.Decider{Templates: templates, Sealer: sealer, Now: time.Now}
	draft, err := d.AccountMail("account-mail:kill-test", "ana@hospital.example", "Reset", "https://portal.hospital.example/login/reset?token=x")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.QueueNotification(context.Background(), draft); err != nil {
		t.Fatal(err)
	}
	select {
	case <-relay.Received():
	case <-time.After(30 * time.Second):
		t.Fatal("the relay never got the mail")
	}
	proc.kill()
	relay.Release()
	proc.start()
	await.Until(t, "the mail to be sent again and recorded", 30*time.Second, func() bool {
		var state string
		_ = db.Pool.QueryRow(context.Background(), `SELECT state FROM notifications WHERE id = $1`, draft.ID).Scan(&state)
		return state == persistence.NotificationSent
	})
	if got, dupes := len(relay.Mails()), relay.Duplicates(); got != 1 || dupes != 1 {
		t.Fatalf("the relay kept %d mails and refused %d duplicates; want 1 and 1", got, dupes)
	}
}

// masterOf is the master key a process started by startProcess uses.
func masterOf(t *testing.T, p *process) *seal.Key {
	t.Helper()
	for i, a := range p.args {
		if a == "--master-key-file" {
			k, err := seal.LoadKeyFile(p.args[i+1], false)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
	}
	t.Fatal("the process has no --master-key-file")
	return nil
}

// TestDeadNotificationsWaitForAnOperator: a message whose every try
// failed is dead, listed for admins with its last error and counted in
// /metrics; the API's retry and 'caregrid admin notifications
// --retry-dead' send dead messages again. A push subscription its service
// says is gone is dropped, and its message is dead at once.
func TestDeadNotificationsWaitForAnOperator(t *testing.T) {
	p := startProviders(t)
	clock := &testClock{}
	clock.Shift(time.Until(localDay(t, 1).Add(2 * time.Hour))) // midday: no quiet hours
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) {
		c.Notify = &notifyConfig{Email: notify.Email{Addr: p.smtp.Addr, From: "caregrid <no-reply@hospital.example>"},
			Push: true, PushContact: "mailto:ops@hospital.example", Language: "en", Now: clock.Now, Idle: 20 * time.Millisecond,
			Retry: notify.Retry{Attempts: 2, First: 50 * time.Millisecond, Max: 50 * time.Millisecond}, Trip: 1000}
	})
	p.push.VAPIDPublic = s.do("GET", "/v1/push/vapid-public-key", "", nil).json(t)["public_key"].(string)
	desk, admin := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1"), s.token(messages.Role_ROLE_ADMIN, "admin-1")
	doc := workingDoctor(t, s)
	p.smtp.Fail(true)
	var patients []string
	for i := range 2 {
		r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
		expect(t, "register", r, 201)
		pid := r.json(t)["id"].(string)
		patients = append(patients, pid)
		if i == 0 { // a browser whose subscription will be gone
			sub := p.push.Subscribe()
			expect(t, "subscribe", s.do("POST", "/v1/me/push-subscriptions", s.token(messages.Role_ROLE_PATIENT, pid),
				map[string]any{"endpoint": sub.Endpoint, "keys": map[string]string{"p256dh": sub.P256DH, "auth": sub.Auth}}), 201)
			p.push.Unsubscribe(sub)
		}
		expect(t, "book", s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doc, "patient_id": pid,
			"start": rfc(localDay(t, 3).Add(time.Duration(i) * 15 * time.Minute)), "duration_minutes": 15}), 201)
	}
	var list struct {
		Notifications []map[string]any `json:"notifications"`
	}
	await.Until(t, "three dead notifications", 20*time.Second, func() bool {
		r := s.do("GET", "/v1/notifications?status=dead", admin, nil)
		return r.status == 200 && json.Unmarshal(r.body, &list) == nil && len(list.Notifications) == 3
	})
	dead := map[string]map[string]any{}
	for _, n := range list.Notifications {
		dead[n["channel"].(string)+"/"+n["patient_id"].(string)] = n
	}
	if n := dead["email/"+patients[0]]; n == nil || n["attempts"] != 2.0 || !strings.Contains(n["last_error"].(string), "451") {
		t.Fatalf("the first patient's dead email: %v", n)
	}
	if n := dead["push/"+patients[0]]; n == nil || n["attempts"] != 1.0 || !strings.Contains(n["last_error"].(string), "gone") {
		t.Fatalf("the gone subscription's message: %v (all: %v)", n, list.Notifications)
	}
	var subs int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM push_subscriptions`).Scan(&subs); err != nil || subs != 0 {
		t.Fatalf("push subscriptions after a 410: %d (%v)", subs, err)
	}
	p.smtp.Fail(false)
	retried := dead["email/"+patients[0]]["id"].(string)
	expect(t, "a patient may not retry", s.do("POST", "/v1/notifications/"+retried+"/retry", s.token(messages.Role_ROLE_PATIENT, patients[0]), nil), 403)
	r := s.do("POST", "/v1/notifications/"+retried+"/retry", admin, nil)
	expect(t, "retry", r, 200)
	if r.json(t)["state"] != "pending" {
		t.Fatalf("retried: %s", r.body)
	}
	expect(t, "retry what is no longer dead", s.do("POST", "/v1/notifications/"+retried+"/retry", admin, nil), 409)
	await.Until(t, "the retried mail", 10*time.Second, func() bool { return len(p.smtp.Mails()) == 1 })
	var out strings.Builder
	if err := adminNotifications(context.Background(), s.db, "dead", "", true, audit.Recorder{}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "pending again") != 2 {
		t.Fatalf("admin notifications --retry-dead: %s", out.String())
	}
	await.Until(t, "the other patient's mail after --retry-dead", 10*time.Second, func() bool { return len(p.smtp.Mails()) == 2 })
	out.Reset()
	if err := adminNotifications(context.Background(), s.db, "dead", "", false, audit.Recorder{}, &out); err != nil {
		t.Fatal(err)
	}
	// The gone subscription's message is dead again: its subscription is gone.
	await.Until(t, "the gone subscription's message dead again", 10*time.Second, func() bool {
		out.Reset()
		_ = adminNotifications(context.Background(), s.db, "dead", "", false, audit.Recorder{}, &out)
		return strings.Count(out.String(), `"id"`) == 1 && strings.Contains(out.String(), `"channel": "push"`)
	})
	var audited int
	await.Until(t, "the retries in the audit trail", 10*time.Second, func() bool {
		_ = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = 'retry-notification'`).Scan(&audited)
		return audited == 3
	})
}

// TestPrescriptionEndsAndEmergencyAccessAreTold: a prescription about to
// end and one ended are told when the clock reaches them; a patient who
// chose SMS only and declined reminders still gets the emergency access
// by email (a security message), and no reminder.
func TestPrescriptionEndsAndEmergencyAccessAreTold(t *testing.T) {
	p := startProviders(t)
	clock := &testClock{}
	s := notifyingServer(t, p, clock)
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	pid := treatedPatient(t, s, doctorID)
	patient := s.token(messages.Role_ROLE_PATIENT, pid)
	prefs := map[string]any{"language": "en", "channels": []string{"sms"}, "reminders": false,
		"quiet_hours": map[string]string{"start": "00:00", "end": "00:00"}, "time_zone": "Europe/Chisinau"}
	expect(t, "SMS only, no reminders", s.do("PUT", "/v1/patients/"+pid+"/notification-preferences", patient, prefs), 200)
	// An appointment tomorrow: its reminders fall due as the clock moves on.
	expect(t, "book", s.do("POST", "/v1/appointments", patient, map[string]any{"doctor_id": doctorID, "patient_id": pid,
		"start": rfc(localDay(t, 1)), "duration_minutes": 15}), 201)
	p.await(t, "the booking's SMS, and nothing else", [3]int{0, 1, 0})
	before := p.counts()

	body := prescriptionBody(pid, "N02BE01", "Paracetamol")
	body["duration_days"] = 5
	r := s.do("POST", "/v1/prescriptions", doc, body)
	expect(t, "prescribe for five days", r, 201)
	expires, err := time.Parse(time.RFC3339Nano, decodePrescription(t, r).ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	clock.Shift(time.Until(expires.Add(-72*time.Hour)) + time.Minute)
	p.await(t, "one SMS that the prescription ends soon", [3]int{before[0], before[1] + 1, 0})
	if sms := p.smpp.Messages()[before[1]]; strings.Contains(sms.Text, "Paracetamol") || !strings.Contains(sms.Text, "new message") {
		t.Fatalf("the ending prescription's SMS: %q", sms.Text)
	}
	clock.Shift(time.Until(expires) + time.Minute)
	p.await(t, "one SMS that it ended", [3]int{before[0], before[1] + 2, 0})

	other := s.token(messages.Role_ROLE_DOCTOR, workingDoctor(t, s))
	expect(t, "break the glass", s.do("POST", "/v1/patients/"+pid+"/emergency-access", other,
		map[string]any{"reason": "unconscious in the emergency room"}), 201)
	p.await(t, "the emergency access by email and SMS", [3]int{before[0] + 1, before[1] + 3, 0})
	mail := p.smtp.Mails()[before[0]]
	if !strings.Contains(mail.Subject, "opened in an emergency") || strings.Contains(mail.Text, "unconscious") {
		t.Fatalf("the emergency access mail: %+v", mail)
	}
	var reminders int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE patient_id = $1 AND event = 'appointment-reminder'`, pid).Scan(&reminders); err != nil || reminders != 0 {
		t.Fatalf("%d reminders for a patient who declined them (%v)", reminders, err)
	}
}
