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

// CareTeam lists the doctors with a care relationship to the patient. Who
// may see it: whoever may list the patient's appointments.
func (g *Grain) CareTeam(req *messages.CareTeamRequest, ctx actorcluster.GrainContext) (*messages.CareTeamReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_CARE_TEAM
	treats, err := g.reads(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	if d := access.ReadPatientAppointments(c, g.id, treats); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	return g.careTeamReply(ctx, c, action, false)
}

// ChangeCareTeam adds a doctor to the care team or removes one.
func (g *Grain) ChangeCareTeam(req *messages.ChangeCareTeamRequest, ctx actorcluster.GrainContext) (*messages.CareTeamReply, error) {
	c := req.GetCaller()
	action := messages.AuditAction_AUDIT_ACTION_ADD_CARE_TEAM
	if req.Remove {
		action = messages.AuditAction_AUDIT_ACTION_REMOVE_CARE_TEAM
	}
	if d := access.ChangeCareTeam(c); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	doctor := req.GetDoctorId()
	if !validate.ID(doctor) {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no doctor %s", doctor))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	err := g.deps.DB.ChangeCareTeam(g.written(sctx, c, action, doctor), g.fence, g.id, doctor, c.GetSubject(), req.Remove)
	switch {
	case errors.Is(err, persistence.ErrNoDoctor):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no doctor %s", doctor))
	case err != nil:
		return nil, g.storeError(ctx, "care team", err)
	}
	// The relationship cache follows: an appointment may still make the
	// doctor a treating one, so a removal only forgets the cached answer.
	g.treating.Forget(doctor)
	g.chained(ctx)
	return g.careTeamReply(ctx, c, action, true)
}

// careTeamReply answers the care team; a read is audited here, a change
// (written) was in its own transaction.
func (g *Grain) careTeamReply(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, written bool) (*messages.CareTeamReply, error) {
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	members, err := g.deps.DB.CareTeam(sctx, g.id)
	if err != nil {
		return nil, g.storeError(ctx, "care team", err)
	}
	if !written {
		if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
			return nil, err
		}
	}
	reply := &messages.CareTeamReply{}
	for _, m := range members {
		reply.Members = append(reply.Members, &messages.CareTeamMember{DoctorId: m.DoctorID, Since: timestamppb.New(m.Since), AddedBy: m.AddedBy})
	}
	return reply, nil
}

// AccessGrants lists every doctor who may read the record now and why:
// the patient themself, receptionists and admins (audited).
func (g *Grain) AccessGrants(req *messages.AccessGrantsRequest, ctx actorcluster.GrainContext) (*messages.AccessGrantsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_ACCESS_GRANTS
	if d := access.ReadAccessGrants(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	grants, err := g.deps.DB.AccessGrants(sctx, g.id, g.deps.Now(), g.deps.CareWindow)
	if err != nil {
		return nil, g.storeError(ctx, "access grants", err)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	reply := &messages.AccessGrantsReply{}
	for _, gr := range grants {
		out := &messages.AccessGrant{DoctorId: gr.DoctorID, Reason: gr.Reason, Since: timestamppb.New(gr.Since), AppointmentId: gr.AppointmentID,
			DemographicsOnly: gr.DemographicsOnly}
		if !gr.Until.IsZero() {
			out.Until = timestamppb.New(gr.Until)
		}
		if !gr.AppointmentStart.IsZero() {
			out.AppointmentStart = timestamppb.New(gr.AppointmentStart)
		}
		reply.Grants = append(reply.Grants, out)
	}
	return reply, nil
}
