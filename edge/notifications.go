package edge

import (
	"context"
	"errors"
	"slices"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// Notifications is what the edge serves of notification delivery besides
// the patient grain: browsers' push subscriptions, the dead letters and
// clinics' reminder times (persistence.DB).
type Notifications interface {
	AddPushSubscription(ctx context.Context, s persistence.PushSubscription) (persistence.PushSubscription, error)
	DeletePushSubscription(ctx context.Context, subject, id string) error
	NotificationsByState(ctx context.Context, state string, after time.Time, afterID string, limit int) ([]persistence.Notification, error)
	RetryNotification(ctx context.Context, id string, now time.Time) (persistence.Notification, error)
	ClinicReminders(ctx context.Context, clinicID string) ([]int32, bool, error)
	SetClinicReminders(ctx context.Context, clinicID string, minutes []int32, at time.Time) error
}

// Limits of the notification routes.
const (
	// MaxReminders is how many reminder times a clinic may set (the
	// message that says so names it).
	MaxReminders = 4
	// MaxReminderMinutes is the earliest a reminder may come: two weeks before.
	MaxReminderMinutes = 14 * 24 * 60
)

type preferencesJSON struct {
	Language   string     `json:"language"`
	Channels   []string   `json:"channels"`
	Reminders  bool       `json:"reminders"`
	QuietHours quietHours `json:"quiet_hours"`
	TimeZone   string     `json:"time_zone"`
	Version    int64      `json:"version"`
	Chosen     bool       `json:"chosen"`
	UpdatedAt  string     `json:"updated_at,omitempty"`
}

type quietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

func toPreferencesJSON(p *messages.NotificationPreferences) preferencesJSON {
	out := preferencesJSON{Language: p.GetLanguage(), Channels: p.GetChannels(), Reminders: p.GetReminders(),
		QuietHours: quietHours{p.GetQuietStart(), p.GetQuietEnd()}, TimeZone: p.GetTimeZone(), Version: p.GetVersion(), Chosen: p.GetChosen()}
	if out.Channels == nil {
		out.Channels = []string{}
	}
	if p.GetUpdatedAt() != nil {
		out.UpdatedAt = instant(p.UpdatedAt.AsTime())
	}
	return out
}

// notificationPreferences answers GET /v1/patients/{id}/notification-preferences
// (the patient, receptionists, admins; the grain decides and audits).
func (s *Server) notificationPreferences(c *fiber.Ctx) error {
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.NotificationPreferencesReply, error) {
		return g.NotificationPreferences(&messages.GetNotificationPreferencesRequest{Caller: caller}, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.GetPreferences().GetVersion()))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(toPreferencesJSON(reply.GetPreferences()))
}

// setNotificationPreferences answers PUT /v1/patients/{id}/notification-preferences
// {language, channels, reminders, quiet_hours: {start, end}, time_zone}
// (If-Match: the version read, optional).
func (s *Server) setNotificationPreferences(c *fiber.Ctx) error {
	id, err := patientID(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	// The grain decides again; asked here first, so that a caller who may
	// not set them learns nothing from the body's validation.
	if d := access.ManageNotifications(caller, id); !d.Allowed {
		return forbidden(d.Reason)
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Language   *string     `json:"language"`
		Channels   *[]string   `json:"channels"`
		Reminders  *bool       `json:"reminders"`
		QuietHours *quietHours `json:"quiet_hours"`
		TimeZone   *string     `json:"time_zone"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	var missing []FieldError
	for name, set := range map[string]bool{"language": in.Language != nil, "channels": in.Channels != nil,
		"reminders": in.Reminders != nil, "quiet_hours": in.QuietHours != nil, "time_zone": in.TimeZone != nil} {
		if !set {
			missing = append(missing, FieldError{name, "required: a PUT sets every preference"})
		}
	}
	if len(missing) > 0 {
		slices.SortFunc(missing, func(a, b FieldError) int { return compareStrings(a.Field, b.Field) })
		return invalidInput(missing)
	}
	var version int64
	if c.Get(fiber.HeaderIfMatch) != "" {
		v, err := ifMatchVersion(c)
		if err != nil {
			return err
		}
		version = v
	}
	p := &messages.NotificationPreferences{Language: *in.Language, Channels: *in.Channels, Reminders: *in.Reminders,
		QuietStart: in.QuietHours.Start, QuietEnd: in.QuietHours.End, TimeZone: *in.TimeZone}
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.NotificationPreferencesReply, error) {
		return g.SetNotificationPreferences(&messages.SetNotificationPreferencesRequest{Caller: caller, Preferences: p, ExpectedVersion: version}, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.GetPreferences().GetVersion()))
	return c.JSON(toPreferencesJSON(reply.GetPreferences()))
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type notificationJSON struct {
	ID            string `json:"id"`
	PatientID     string `json:"patient_id,omitempty"`
	Event         string `json:"event"`
	Channel       string `json:"channel"`
	About         string `json:"about,omitempty"`
	State         string `json:"state"`
	Attempts      int32  `json:"attempts"`
	CreatedAt     string `json:"created_at"`
	NextAttemptAt string `json:"next_attempt_at,omitempty"`
	SentAt        string `json:"sent_at,omitempty"`
	DeliveredAt   string `json:"delivered_at,omitempty"`
	LastError     string `json:"last_error,omitempty"`
}

func toNotificationJSON(patientID string, n *messages.NotificationRecord) notificationJSON {
	out := notificationJSON{ID: n.Id, PatientID: patientID, Event: n.Event, Channel: n.Channel, About: n.About, State: n.State,
		Attempts: n.Attempts, CreatedAt: instant(n.CreatedAt.AsTime()), LastError: n.LastError}
	if n.NextAttemptAt != nil {
		out.NextAttemptAt = instant(n.NextAttemptAt.AsTime())
	}
	if n.SentAt != nil {
		out.SentAt = instant(n.SentAt.AsTime())
	}
	if n.DeliveredAt != nil {
		out.DeliveredAt = instant(n.DeliveredAt.AsTime())
	}
	return out
}

// patientNotifications answers GET /v1/patients/{id}/notifications: what
// was sent to the patient, when, over which channel, and its delivery
// state, newest first (the patient, receptionists, admins, doctors who
// treat them; the grain decides and audits).
func (s *Server) patientNotifications(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.PatientNotificationsReply, error) {
		return g.Notifications(&messages.PatientNotificationsRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	out := struct {
		Notifications []notificationJSON `json:"notifications"`
		NextCursor    string             `json:"next_cursor,omitempty"`
	}{Notifications: make([]notificationJSON, 0, len(reply.Notifications)), NextCursor: reply.NextCursor}
	for _, n := range reply.Notifications {
		out.Notifications = append(out.Notifications, toNotificationJSON("", n))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// listNotifications answers GET /v1/notifications?status= (dead by
// default; pending, sending, sent, delivered, skipped, all): the operators'
// view of delivery, oldest first (admins).
func (s *Server) listNotifications(c *fiber.Ctx) error {
	if _, err := s.deliveryManager(c); err != nil {
		return err
	}
	q, err := reviewQuery(c, persistence.NotificationDead,
		[]string{persistence.NotificationPending, persistence.NotificationSending, persistence.NotificationSent,
			persistence.NotificationDelivered, persistence.NotificationDead, persistence.NotificationSkipped},
		FieldError{"status", "must be pending, sending, sent, delivered, dead, skipped or all"})
	if err != nil {
		return err
	}
	if s.cfg.Notifications == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no notifications")
	}
	ns, err := s.cfg.Notifications.NotificationsByState(c.UserContext(), q.status, q.after, q.afterID, q.limit+1)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		Notifications []notificationJSON `json:"notifications"`
		NextCursor    string             `json:"next_cursor,omitempty"`
	}{Notifications: make([]notificationJSON, 0, len(ns))}
	if len(ns) > q.limit {
		ns = ns[:q.limit]
		out.NextCursor = reviewCursorOf(ns[len(ns)-1].CreatedAt, ns[len(ns)-1].ID)
	}
	for _, n := range ns {
		out.Notifications = append(out.Notifications, toNotificationJSON(n.PatientID, patient.NotificationOf(n)))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// retryNotification answers POST /v1/notifications/{id}/retry: a dead
// message is sent again from its first try (admins; audited).
func (s *Server) retryNotification(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.deliveryManager(c)
	if err != nil {
		return err
	}
	if s.cfg.Notifications == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no notifications")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	const key = "notifications"
	wctx := s.cfg.Audit.InWrite(ctx, audit.Event(caller, messages.AuditAction_AUDIT_ACTION_RETRY_NOTIFICATION, "notification", id, "",
		messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", time.Now()))
	n, err := s.cfg.Notifications.RetryNotification(wctx, id, time.Now())
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such notification")
	case errors.Is(err, persistence.ErrWrongState):
		return problem(fiber.StatusConflict, "wrong-state", "Not allowed in the current state", "only a dead notification is sent again")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	s.cfg.Audit.Drain(s.cfg.Logger)
	return c.JSON(toNotificationJSON(n.PatientID, patient.NotificationOf(n)))
}

// addPushSubscription answers POST /v1/me/push-subscriptions
// {endpoint, keys: {p256dh, auth}} (PushSubscription.toJSON()): the
// caller's browser receives push messages from now on (patients).
func (s *Server) addPushSubscription(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if caller.GetRole() != messages.Role_ROLE_PATIENT {
		return forbidden("only patients receive push notifications")
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Endpoint       string `json:"endpoint"`
		ExpirationTime *int64 `json:"expirationTime"`
		Keys           struct {
			P256DH string `json:"p256dh"`
			Auth   string `json:"auth"`
		} `json:"keys"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	var bad validate.Errors
	notify.ValidSubscription(in.Endpoint, in.Keys.P256DH, in.Keys.Auth, &bad)
	if len(bad) > 0 {
		fields := make([]FieldError, len(bad))
		for i, f := range bad {
			fields[i] = FieldError{f.Field, f.Message}
		}
		return invalidInput(fields)
	}
	if s.cfg.Notifications == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no notifications")
	}
	sub, err := s.cfg.Notifications.AddPushSubscription(c.UserContext(), persistence.PushSubscription{ID: uuid.NewString(),
		Subject: caller.GetSubject(), Endpoint: in.Endpoint, P256DH: in.Keys.P256DH, Auth: in.Keys.Auth, CreatedAt: time.Now().UTC()})
	if err != nil {
		return directoryUnavailable(s, err)
	}
	return created(c, "/v1/me/push-subscriptions/"+sub.ID, false, fiber.Map{"id": sub.ID, "endpoint": sub.Endpoint, "created_at": instant(sub.CreatedAt)})
}

// deletePushSubscription answers DELETE /v1/me/push-subscriptions/{id}:
// the caller's browser receives no more push messages (its owner only).
func (s *Server) deletePushSubscription(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if caller.GetRole() != messages.Role_ROLE_PATIENT {
		return forbidden("only patients receive push notifications")
	}
	if s.cfg.Notifications == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no notifications")
	}
	switch err := s.cfg.Notifications.DeletePushSubscription(c.UserContext(), caller.GetSubject(), id); {
	case errors.Is(err, persistence.ErrNotFound):
		return problem(fiber.StatusNotFound, "not-found", "Not found", "you have no push subscription with this id")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// vapidKey answers GET /v1/push/vapid-public-key: the application server
// key a browser subscribes with (public).
func (s *Server) vapidKey(c *fiber.Ctx) error {
	if s.cfg.VAPIDPublicKey == "" {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node sends no push notifications")
	}
	c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
	return c.JSON(fiber.Map{"public_key": s.cfg.VAPIDPublicKey})
}

type remindersJSON struct {
	Minutes []int32 `json:"minutes_before"`
	Default bool    `json:"default"`
}

// clinicReminders answers GET /v1/clinics/{id}/reminders: how long before
// an appointment its patients are reminded (admins).
func (s *Server) clinicReminders(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	if _, err := s.deliveryManager(c); err != nil {
		return err
	}
	if s.cfg.Notifications == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no notifications")
	}
	minutes, ok, err := s.cfg.Notifications.ClinicReminders(c.UserContext(), id)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	if !ok {
		minutes = s.cfg.DefaultReminders
	}
	return c.JSON(remindersJSON{Minutes: minutes, Default: !ok})
}

// setClinicReminders answers PUT /v1/clinics/{id}/reminders
// {minutes_before: [1440, 120]} (null: back to the node's default) (admins; audited).
func (s *Server) setClinicReminders(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.deliveryManager(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Minutes []int32 `json:"minutes_before"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	if len(in.Minutes) > MaxReminders {
		return invalidInput([]FieldError{FieldError{"minutes_before", "at most 4 reminders"}})
	}
	seen := map[int32]bool{}
	for _, m := range in.Minutes {
		if m < 1 || m > MaxReminderMinutes || seen[m] {
			return invalidInput([]FieldError{FieldError{"minutes_before", "each a distinct number of minutes from 1 to 20160 (two weeks)"}})
		}
		seen[m] = true
	}
	if s.cfg.Notifications == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no notifications")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	wctx := s.cfg.Audit.InWrite(ctx, audit.Event(caller, messages.AuditAction_AUDIT_ACTION_SET_CLINIC_REMINDERS, "clinic", id, "",
		messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", time.Now()))
	switch err := s.cfg.Notifications.SetClinicReminders(wctx, id, in.Minutes, time.Now()); {
	case errors.Is(err, persistence.ErrNotFound):
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such clinic")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	s.cfg.Audit.Drain(s.cfg.Logger)
	out := remindersJSON{Minutes: in.Minutes}
	if in.Minutes == nil {
		out = remindersJSON{Minutes: s.cfg.DefaultReminders, Default: true}
	}
	return c.JSON(out)
}

// deliveryManager is the caller of an operators' route of notification
// delivery: an admin, or an error.
func (s *Server) deliveryManager(c *fiber.Ctx) (*messages.Caller, error) {
	caller, err := s.caller(c)
	if err != nil {
		return nil, err
	}
	if d := access.ManageNotificationDelivery(caller); !d.Allowed {
		return nil, forbidden(d.Reason)
	}
	return caller, nil
}
