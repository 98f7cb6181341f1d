package identity

import (
	"context"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// AuditEvents records logins and ended sessions in the audit trail. A
// patient's logins are filed under their record, so they appear in the
// access log the patient reads. A login whose event cannot be recorded
// fails (the trail fails closed, as for every other access).
type AuditEvents struct {
	Recorder audit.Recorder
	Logger   *slog.Logger
}

var loginOutcomes = map[string]messages.AuditOutcome{
	"success": messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS,
	"denied":  messages.AuditOutcome_AUDIT_OUTCOME_DENIED,
	"failed":  messages.AuditOutcome_AUDIT_OUTCOME_FAILED,
}

func (a AuditEvents) Login(ctx context.Context, e LoginEvent) error {
	return a.Recorder.Record(ctx, loginEvent(e))
}

func (a AuditEvents) LoginPending(e LoginEvent) persistence.PendingAudit {
	return a.Recorder.Pending(loginEvent(e))
}

func (a AuditEvents) LoginWritten(context.Context, LoginEvent) {
	a.Recorder.Drain(a.Logger)
}

// loginEvent is a login page's event: a patient's is filed under their
// record.
func loginEvent(e LoginEvent) *messages.AuditEvent {
	role, _ := messages.ParseRole(e.Role)
	caller := &messages.Caller{Subject: e.AccountID, Role: role, Client: e.Client, SourceAddress: e.SourceAddress}
	if e.Attempt != "" {
		// Someone typed this name or IDNP; nothing proves it was its owner.
		caller = &messages.Caller{Subject: "attempt:" + e.Attempt, Client: e.Client, SourceAddress: e.SourceAddress}
	}
	patient, action := e.PatientID, e.Action
	if role == messages.Role_ROLE_PATIENT && patient == "" {
		patient = e.AccountID
	}
	if action == messages.AuditAction_AUDIT_ACTION_UNSPECIFIED {
		action = messages.AuditAction_AUDIT_ACTION_LOGIN
	}
	return audit.Event(caller, action, "account", e.AccountID, patient, loginOutcomes[e.Outcome], e.Detail, time.Now())
}

func (a AuditEvents) SessionEnded(ctx context.Context, sessionID, accountID, reason string) {
	ev := audit.Event(&messages.Caller{Subject: accountID}, messages.AuditAction_AUDIT_ACTION_LOGOUT, "session", sessionID, "", messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, reason, time.Now())
	if err := a.Recorder.Record(ctx, ev); err != nil && a.Logger != nil {
		// The session is already ended; a missing record of it is logged, not undone.
		a.Logger.Error("audit session end", "session", sessionID, "error", err)
	}
}

func (a AuditEvents) AdminWrite(ctx context.Context, c *messages.Caller, action messages.AuditAction, accountID, patientID, detail string) context.Context {
	ev := audit.Event(c, action, "account", accountID, patientID, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, detail, time.Now())
	return a.Recorder.InWrite(ctx, ev)
}

func (a AuditEvents) AdminWritten(context.Context, string, string) {
	a.Recorder.Drain(a.Logger)
}

func (a AuditEvents) Admin(ctx context.Context, c *messages.Caller, action messages.AuditAction, accountID, patientID, outcome, detail string) error {
	ev := audit.Event(c, action, "account", accountID, patientID, loginOutcomes[outcome], detail, time.Now())
	return a.Recorder.Record(ctx, ev)
}

// forgetting tells the node's verifier at once about sessions ended here.
type forgetting struct {
	Events
	v *Verifier
}

func (f forgetting) SessionEnded(ctx context.Context, sessionID, accountID, reason string) {
	f.v.Forget(sessionID)
	f.Events.SessionEnded(ctx, sessionID, accountID, reason)
}

// Sessions serves /v1/me/sessions from the provider's store.
type Sessions struct{ p *Provider }

// Sessions is the edge's view of the provider's sessions.
func (p *Provider) Sessions() Sessions { return Sessions{p} }

// maxListedSessions bounds /v1/me/sessions.
const maxListedSessions = 100

func (s Sessions) List(ctx context.Context, accountID string) ([]edge.SessionInfo, error) {
	rows, err := s.p.cfg.DB.AccountSessions(ctx, accountID, maxListedSessions)
	if err != nil {
		return nil, err
	}
	out := make([]edge.SessionInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, edge.SessionInfo{ID: r.ID, Client: r.ClientID, Methods: r.AMR, CreatedAt: r.CreatedAt.UTC(),
			LastUsedAt: r.LastUsedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), SourceAddress: r.SourceAddress, UserAgent: r.UserAgent})
	}
	return out, nil
}

func (s Sessions) Revoke(ctx context.Context, accountID, sessionID string) (bool, error) {
	sess, err := s.p.cfg.DB.SessionByID(ctx, sessionID)
	if notFound(err) || (err == nil && sess.AccountID != accountID) {
		return false, nil // another account's session is as good as none
	}
	if err != nil {
		return false, err
	}
	revoked, err := s.p.cfg.DB.RevokeSession(ctx, sessionID, "ended by its owner")
	if revoked {
		s.p.cfg.Events.SessionEnded(ctx, sessionID, accountID, "ended by its owner")
	}
	return revoked, err
}
