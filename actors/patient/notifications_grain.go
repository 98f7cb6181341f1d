package patient

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxNotificationsPage is the largest page of a patient's notifications.
const MaxNotificationsPage = 100

// preferences is the patient's notification preferences, or the defaults.
func (g *Grain) preferences() (persistence.NotificationPreferences, bool, error) {
	sctx, cancel := g.storeCtx()
	defer cancel()
	p, ok, err := g.deps.DB.NotificationPreferences(sctx, g.id)
	if err != nil || ok {
		return p, ok, err
	}
	lang := g.deps.NotifyLanguage
	if lang == "" {
		lang = "ro"
	}
	return notify.DefaultPreferences(g.id, lang), false, nil
}

func preferencesOf(p persistence.NotificationPreferences, chosen bool) *messages.NotificationPreferences {
	out := &messages.NotificationPreferences{Language: p.Language, Channels: p.Channels, Reminders: p.Reminders,
		QuietStart: notify.Clock(p.QuietStart), QuietEnd: notify.Clock(p.QuietEnd), TimeZone: p.TimeZone, Version: p.Version, Chosen: chosen}
	if !p.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(p.UpdatedAt)
	}
	return out
}

// NotificationPreferences reads how the patient wants to be told.
func (g *Grain) NotificationPreferences(req *messages.GetNotificationPreferencesRequest, ctx actorcluster.GrainContext) (*messages.NotificationPreferencesReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_NOTIFICATION_PREFERENCES
	if d := access.ManageNotifications(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	p, chosen, err := g.preferences()
	if err != nil {
		return nil, g.storeError(ctx, "notification preferences", err)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return &messages.NotificationPreferencesReply{Preferences: preferencesOf(p, chosen)}, nil
}

// SetNotificationPreferences replaces the patient's preferences (all
// fields: a PUT). Security messages are sent whatever is chosen; the
// reply says so by listing email among the channels it uses regardless.
func (g *Grain) SetNotificationPreferences(req *messages.SetNotificationPreferencesRequest, ctx actorcluster.GrainContext) (*messages.NotificationPreferencesReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_SET_NOTIFICATION_PREFERENCES
	if d := access.ManageNotifications(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	in := req.GetPreferences()
	var errs validate.Errors
	p := persistence.NotificationPreferences{PatientID: g.id, Language: in.GetLanguage(), Channels: in.GetChannels(),
		Reminders: in.GetReminders(), TimeZone: in.GetTimeZone()}
	if p.Channels == nil {
		p.Channels = []string{}
	}
	var err error
	if p.QuietStart, err = notify.ParseClock(in.GetQuietStart()); err != nil {
		errs.Add("quiet_hours.start", "must be an HH:MM time")
	}
	if p.QuietEnd, err = notify.ParseClock(in.GetQuietEnd()); err != nil {
		errs.Add("quiet_hours.end", "must be an HH:MM time")
	}
	notify.ValidatePreferences(p, &errs)
	if err := errs.Err(); err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	current, _, err := g.preferences()
	if err != nil {
		return nil, g.storeError(ctx, "notification preferences", err)
	}
	if v := req.GetExpectedVersion(); v != 0 && v != current.Version {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrVersionMismatch("the preferences are at version %d, not %d", current.Version, v))
	}
	p.Version, p.UpdatedAt = current.Version+1, g.deps.Now().UTC().Truncate(time.Microsecond)
	sctx, cancel := g.storeCtx()
	defer cancel()
	detail := fmt.Sprintf("language %s, channels %s, reminders %t", p.Language, strings.Join(p.Channels, "+"), p.Reminders)
	if err := g.deps.DB.SetNotificationPreferences(g.written(sctx, c, action, detail), g.fence, p); err != nil {
		return nil, g.storeError(ctx, action.Name(), err)
	}
	g.chained(ctx)
	return &messages.NotificationPreferencesReply{Preferences: preferencesOf(p, true)}, nil
}

// Notifications lists what was sent to the patient, newest first, with
// each message's delivery state (never its content).
func (g *Grain) Notifications(req *messages.PatientNotificationsRequest, ctx actorcluster.GrainContext) (*messages.PatientNotificationsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_NOTIFICATIONS
	treats, err := g.treats(c)
	if err != nil {
		return nil, g.storeError(ctx, "care relationship", err)
	}
	if d := access.ReadNotifications(c, g.id, treats); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > MaxNotificationsPage {
		limit = MaxNotificationsPage
	}
	var before time.Time
	var beforeID string
	if cur := req.GetCursor(); cur != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cur)
		var micros int64
		if err == nil {
			_, err = fmt.Sscanf(string(raw), "%d,%s", &micros, &beforeID)
		}
		if err != nil || !validate.ID(beforeID) {
			return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("cursor: not one this API gave"))
		}
		before = time.UnixMicro(micros)
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	ns, err := g.deps.DB.PatientNotifications(sctx, g.id, before, beforeID, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "notifications", err)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	out := &messages.PatientNotificationsReply{}
	if len(ns) > limit {
		ns = ns[:limit]
		last := ns[len(ns)-1]
		out.NextCursor = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d,%s", last.CreatedAt.UnixMicro(), last.ID))
	}
	for _, n := range ns {
		out.Notifications = append(out.Notifications, NotificationOf(n))
	}
	return out, nil
}

// NotificationOf is a message's delivery record, as the API shows it.
func NotificationOf(n persistence.Notification) *messages.NotificationRecord {
	r := &messages.NotificationRecord{Id: n.ID, Event: n.Event, Channel: n.Channel, State: n.State, Attempts: int32(n.Attempts),
		CreatedAt: timestamppb.New(n.CreatedAt), LastError: n.LastError, About: n.About}
	if n.State == persistence.NotificationPending || n.State == persistence.NotificationSending {
		r.NextAttemptAt = timestamppb.New(n.NextAttemptAt)
	}
	if n.SentAt != nil {
		r.SentAt = timestamppb.New(*n.SentAt)
	}
	if n.DeliveredAt != nil {
		r.DeliveredAt = timestamppb.New(*n.DeliveredAt)
	}
	return r
}
