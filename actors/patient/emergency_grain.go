package patient

import (
	"errors"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Emergency access limits.
const (
	MinEmergencyReasonRunes = 10
	MaxEmergencyReasonRunes = 500
)

// emergencyDetail is the audit detail of a grant: its id and end.
func emergencyDetail(e persistence.EmergencyAccess) string {
	return emergencyGrantPrefix + e.ID + " until " + e.ExpiresAt.Format(time.RFC3339)
}

const emergencyGrantPrefix = "grant "

// emergencyGrantOf is the grant id an audit detail names, or "".
func emergencyGrantOf(detail string) string {
	rest, ok := strings.CutPrefix(detail, emergencyGrantPrefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	if !validate.ID(id) {
		return ""
	}
	return id
}

// OpenEmergencyReason is a grant's reason, opened with the patient's key.
func OpenEmergencyReason(k *seal.Key, e persistence.EmergencyAccess) (string, error) {
	return persistence.OpenEmergencyReason(k, e)
}

// EmergencyAccess breaks the glass: the calling doctor may read the record
// (Grain.reads), not write it, until the grant expires
// (CareWindow.Emergency, 4 hours by default), past any restriction. The grant is in the patient's access log with its
// reason and purpose ETREAT, and waits in the review queue.
func (g *Grain) EmergencyAccess(req *messages.EmergencyAccessRequest, ctx actorcluster.GrainContext) (*messages.EmergencyAccessReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_EMERGENCY_ACCESS
	if d := access.BreakGlass(c); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	var errs validate.Errors
	errs.Text("reason", req.Reason, MaxEmergencyReasonRunes, true)
	if len([]rune(req.Reason)) < MinEmergencyReasonRunes {
		errs.Add("reason", "must say why, in at least 10 characters")
	}
	if !validate.ID(req.AccessId) {
		errs.Add("access_id", "must be a UUID")
	}
	if err := errs.Err(); err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	lasts := g.deps.CareWindow.Emergency
	if lasts <= 0 {
		lasts = persistence.DefaultCareWindow.Emergency
	}
	now := g.deps.Now().UTC()
	grant := persistence.EmergencyAccess{ID: req.AccessId, PatientID: g.id, DoctorID: c.GetSubject(), Reason: req.Reason,
		GrantedAt: now, ExpiresAt: now.Add(lasts)}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	event := &messages.EmergencyAccessGranted{AccessId: grant.ID, PatientId: g.id, DoctorId: grant.DoctorID,
		GrantedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(grant.ExpiresAt)}
	// The access log marks the grant with the purpose of an emergency
	// treatment and names it: the reason is free text about the patient,
	// kept sealed with the grant (shredded with the record), and the
	// access log shows it from there (AccessLog).
	marked := proto.Clone(c).(*messages.Caller)
	marked.BreakGlassReason, marked.PurposeOfUse = "", "ETREAT"
	switch err := g.deps.DB.GrantEmergencyAccess(g.written(sctx, marked, action, emergencyDetail(grant)), g.fence, k, grant, g.rec.Version, event); {
	case errors.Is(err, persistence.ErrNoDoctor):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("only doctors with a record open a record in an emergency"))
	case err != nil:
		return nil, g.storeError(ctx, "emergency access", err)
	}
	g.chained(ctx)
	return &messages.EmergencyAccessReply{Id: grant.ID, ExpiresAt: timestamppb.New(grant.ExpiresAt)}, nil
}
