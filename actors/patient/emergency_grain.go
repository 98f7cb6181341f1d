package patient

import (
	"errors"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Emergency access limits.
const (
	MinEmergencyReasonRunes = 10
	MaxEmergencyReasonRunes = 500
)

// EmergencyAccess breaks the glass: the calling doctor may read the record
// (Grain.reads), not write it, until the grant expires
// (CareWindow.Emergency, 4 hours by default), past any restriction. The grant is in the patient's access log with its
// reason and purpose ETREAT, and waits in the review queue.
func (g *Grain) EmergencyAccess(req *messages.EmergencyAccessRequest, ctx actorcluster.GrainContext) (*messages.EmergencyAccessReply, error) {
	c := req.GetCaller()
	const action = "emergency-access"
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
	sctx, cancel := g.storeCtx()
	defer cancel()
	switch err := g.deps.DB.GrantEmergencyAccess(sctx, g.fence, grant); {
	case errors.Is(err, persistence.ErrNoDoctor):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("only doctors with a record open a record in an emergency"))
	case err != nil:
		return nil, g.storeError(ctx, "emergency access", err)
	}
	// The access log marks the grant: the reason, and the purpose of an
	// emergency treatment.
	marked := proto.Clone(c).(*messages.Caller)
	marked.BreakGlassReason, marked.PurposeOfUse = req.Reason, "ETREAT"
	if err := g.record(ctx, marked, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "until "+grant.ExpiresAt.Format(time.RFC3339)); err != nil {
		return nil, err
	}
	return &messages.EmergencyAccessReply{Id: grant.ID, ExpiresAt: timestamppb.New(grant.ExpiresAt)}, nil
}
