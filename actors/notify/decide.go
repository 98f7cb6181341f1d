package notify

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
)

// Message is what a dispatcher sends: the address and the rendered text,
// sealed in the notifications row (reset links travel in account mail).
type Message struct {
	// To is an email address or an E.164 phone number.
	To   string      `json:"to,omitempty"`
	Push *PushTarget `json:"push,omitempty"`
	// Subject and Text are the email's; HTML its other part. Short is
	// what SMS and push say.
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
	Short   string `json:"short,omitempty"`
	URL     string `json:"url,omitempty"`
	// Start is the appointment time a reminder was decided for: a
	// reminder whose appointment moved or ended is not sent.
	Start time.Time `json:"start,omitzero"`

	// Set by the dispatcher from the row, not sealed.
	ID       string `json:"-"`
	Event    string `json:"-"`
	Language string `json:"-"`
}

// PushTarget is a browser's push subscription.
type PushTarget struct {
	Endpoint string `json:"endpoint"`
	P256DH   string `json:"p256dh"`
	Auth     string `json:"auth"`
}

// Sealer seals messages for the notifications table (a key derived from
// the master key, bound to the row's id).
type Sealer struct{ Key *seal.Key }

// NewSealer derives the notifications' key from the master key.
func NewSealer(master *seal.Key) (Sealer, error) {
	k := master.Derive("notifications")
	key, err := seal.NewKey(k[:])
	return Sealer{Key: key}, err
}

func (s Sealer) seal(id string, m Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return s.Key.Seal(b, "notification:"+id), nil
}

// Open reads a row's message.
func (s Sealer) Open(n persistence.Notification) (Message, error) {
	b, err := s.Key.Open(n.Content, "notification:"+n.ID)
	if err != nil {
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, err
	}
	m.ID, m.Event, m.Language = n.ID, n.Event, n.Language
	return m, nil
}

// Decider decides the messages of notification events.
type Decider struct {
	Templates *Templates
	Sealer    Sealer
	// Language is the language of patients who have not chosen one.
	Language  string
	PortalURL string
	// Enabled are the channels this cluster has a provider for (nil: all);
	// no message is decided for the others.
	Enabled map[string]bool
	Now     func() time.Time
}

// Decide is a persistence.Decider: for each event, the patient's
// preferences (or the defaults) name the language and channels; each
// channel with an address gets one message. Reminders honour an opt-out;
// security messages go out whatever the patient chose (email first) and
// are not held for quiet hours; SMS and push wait for the end of quiet
// hours, and a reminder they would push past its appointment is written
// skipped.
func (d Decider) Decide(evs []persistence.NotificationEvent, c persistence.NotificationContext) ([]persistence.NotificationDraft, error) {
	var out []persistence.NotificationDraft
	now := d.Now()
	for _, ev := range evs {
		r, ok := c.Patients[ev.PatientID]
		if !ok {
			continue // erased since
		}
		prefs := r.Preferences
		if !r.Chosen {
			prefs = DefaultPreferences(r.PatientID, d.Language)
		}
		if ev.Event == AppointmentReminder && !prefs.Reminders {
			continue
		}
		var data eventData
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			return nil, fmt.Errorf("notification event %s: %w", ev.Key, err)
		}
		doctor := c.Doctors[data.DoctorID]
		rendered, err := d.Templates.Render(prefs.Language, ev.Event, d.view(r, doctor, data))
		if err != nil {
			return nil, fmt.Errorf("notification event %s: %w", ev.Key, err)
		}
		channels := prefs.Channels
		if Security(ev.Event) && !slices.Contains(channels, "email") {
			channels = append([]string{"email"}, channels...)
		}
		due := now
		if ev.Event == AppointmentReminder && ev.CreatedAt.After(now) {
			due = ev.CreatedAt
		}
		for _, ch := range channels {
			if d.Enabled != nil && !d.Enabled[ch] {
				continue
			}
			var targets []Message
			switch ch {
			case "email":
				if r.Email != "" {
					targets = append(targets, Message{To: r.Email, Subject: rendered.Subject, Text: rendered.Text, HTML: rendered.HTML, URL: d.PortalURL})
				}
			case "sms":
				if r.Phone != "" {
					targets = append(targets, Message{To: r.Phone, Short: rendered.Short})
				}
			case "push":
				for _, s := range r.Push {
					targets = append(targets, Message{Push: &PushTarget{Endpoint: s.Endpoint, P256DH: s.P256DH, Auth: s.Auth},
						Subject: "caregrid", Short: rendered.Short, URL: d.PortalURL})
				}
			}
			for i, m := range targets {
				m.Start = data.Start
				if ev.Event != AppointmentReminder {
					m.Start = time.Time{}
				}
				at, skip := due, false
				if ch != "email" && !Security(ev.Event) {
					at = QuietUntil(prefs, due)
					skip = ev.Event == AppointmentReminder && !at.Before(data.Start)
				}
				key := ev.Key + ":" + ch
				if m.Push != nil {
					key += ":" + r.Push[i].ID
				}
				id := persistence.NewNotificationID()
				content, err := d.Sealer.seal(id, m)
				if err != nil {
					return nil, err
				}
				out = append(out, persistence.NotificationDraft{ID: id, Key: key, PatientID: r.PatientID, Event: ev.Event, Channel: ch,
					Language: prefs.Language, About: ev.About, Content: content, NextAttemptAt: at, Skip: skip})
			}
		}
	}
	return out, nil
}

// view is what the templates show of an event, times in the clinic's zone.
func (d Decider) view(r persistence.NotificationRecipient, doctor persistence.NotificationDoctor, e eventData) View {
	loc, err := time.LoadLocation(doctor.TimeZone)
	if err != nil || doctor.TimeZone == "" {
		loc, _ = time.LoadLocation(DefaultTimeZone)
	}
	if loc == nil {
		loc = time.UTC
	}
	format := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(loc).Format("02.01.2006 15:04 MST")
	}
	return View{PatientName: r.GivenName, DoctorName: doctor.Name, ClinicName: doctor.ClinicName,
		Start: format(e.Start), PreviousStart: format(e.PreviousStart), Expires: format(e.ExpiresAt), By: e.By, PortalURL: d.PortalURL}
}

// AccountMail is a draft of the identity provider's mail to an account:
// rendered by it, sent by the dispatchers with retries.
func (d Decider) AccountMail(key, to, subject, body string) (persistence.NotificationDraft, error) {
	id := persistence.NewNotificationID()
	content, err := d.Sealer.seal(id, Message{To: to, Subject: subject, Text: body})
	if err != nil {
		return persistence.NotificationDraft{}, err
	}
	return persistence.NotificationDraft{ID: id, Key: key, Event: AccountMail, Channel: "email", Language: "",
		About: "", Content: content, NextAttemptAt: d.Now()}, nil
}
