package patient

import (
	"errors"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Restrictions lists the patient's restrictions, live and lifted (the
// patient, receptionists, admins; audited).
func (g *Grain) Restrictions(req *messages.RestrictionsRequest, ctx actorcluster.GrainContext) (*messages.RestrictionsReply, error) {
	c := req.GetCaller()
	if err := g.restrictionsAllowed(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_RESTRICTIONS); err != nil {
		return nil, err
	}
	return g.restrictionsReply(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_RESTRICTIONS, false, false)
}

// Restrict blocks a doctor or a clinic's doctors from the record, or
// limits a doctor to its demographics. It
// takes effect at once: this activation is the patient's only one that
// decides reads, and it forgets every cached relationship here; the
// prescription grains ask the database on every request.
func (g *Grain) Restrict(req *messages.RestrictRequest, ctx actorcluster.GrainContext) (*messages.RestrictionsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_RESTRICT
	if err := g.restrictionsAllowed(ctx, c, action); err != nil {
		return nil, err
	}
	var errs validate.Errors
	if req.Kind != persistence.BlockDoctor && req.Kind != persistence.BlockClinic && req.Kind != persistence.DemographicsOnly {
		errs.Add("kind", "must be block-doctor, block-clinic or demographics-only")
	}
	if !validate.ID(req.TargetId) {
		errs.Add("target_id", "must be a doctor's or a clinic's id (UUID)")
	}
	if !validate.ID(req.RestrictionId) {
		errs.Add("restriction_id", "must be a UUID")
	}
	if err := errs.Err(); err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	created, err := g.deps.DB.Restrict(g.written(sctx, c, action, req.TargetId), g.fence, g.id, persistence.Restriction{ID: req.RestrictionId, Kind: req.Kind,
		TargetID: req.TargetId, CreatedAt: g.deps.Now().UTC(), CreatedBy: c.GetSubject()})
	switch {
	case errors.Is(err, persistence.ErrNoTarget):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("no such doctor or clinic").
			WithMetadata(map[string]string{"field:target_id": "names no such doctor or clinic"}))
	case err != nil:
		return nil, g.storeError(ctx, "restrict", err)
	}
	g.treating.ForgetAll()
	g.chained(ctx)
	return g.restrictionsReply(ctx, c, action, created, true)
}

// LiftRestriction ends a restriction; it stays in the history.
func (g *Grain) LiftRestriction(req *messages.LiftRestrictionRequest, ctx actorcluster.GrainContext) (*messages.RestrictionsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_LIFT_RESTRICTION
	if err := g.restrictionsAllowed(ctx, c, action); err != nil {
		return nil, err
	}
	if !validate.ID(req.RestrictionId) {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no live restriction %s", req.RestrictionId))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	switch err := g.deps.DB.Lift(g.written(sctx, c, action, req.RestrictionId), g.fence, g.id, req.RestrictionId, c.GetSubject(), g.deps.Now().UTC()); {
	case errors.Is(err, persistence.ErrNotFound):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no live restriction %s", req.RestrictionId))
	case err != nil:
		return nil, g.storeError(ctx, "lift restriction", err)
	}
	g.treating.ForgetAll()
	g.chained(ctx)
	return g.restrictionsReply(ctx, c, action, false, true)
}

func (g *Grain) restrictionsAllowed(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction) error {
	if d := access.ManageRestrictions(c, g.id); !d.Allowed {
		return g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return g.notFound(ctx, c, action)
	}
	return nil
}

// restrictionsReply answers the restrictions; a read is audited here, a
// change (written) was in its own transaction.
func (g *Grain) restrictionsReply(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, created, written bool) (*messages.RestrictionsReply, error) {
	sctx, cancel := g.storeCtx()
	defer cancel()
	rs, err := g.deps.DB.Restrictions(sctx, g.id)
	if err != nil {
		return nil, g.storeError(ctx, "restrictions", err)
	}
	if !written {
		if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
			return nil, err
		}
	}
	reply := &messages.RestrictionsReply{Created: created}
	for _, r := range rs {
		out := &messages.Restriction{Id: r.ID, Kind: r.Kind, TargetId: r.TargetID, CreatedAt: timestamppb.New(r.CreatedAt),
			CreatedBy: r.CreatedBy, LiftedBy: r.LiftedBy}
		if !r.LiftedAt.IsZero() {
			out.LiftedAt = timestamppb.New(r.LiftedAt)
		}
		reply.Restrictions = append(reply.Restrictions, out)
	}
	return reply, nil
}
