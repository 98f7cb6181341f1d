package edge

import (
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// restrictionJSON is one of a patient's restrictions, live or lifted.
type restrictionJSON struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	TargetID   string `json:"target_id"`
	TargetName string `json:"target_name,omitempty"`
	CreatedAt  string `json:"created_at"`
	CreatedBy  string `json:"created_by"`
	LiftedAt   string `json:"lifted_at,omitempty"`
	LiftedBy   string `json:"lifted_by,omitempty"`
}

// restrictions answers GET /v1/patients/{id}/restrictions.
func (s *Server) restrictions(c *fiber.Ctx) error {
	return s.restrictionCall(c, fiber.StatusOK, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.RestrictionsReply, error) {
		return g.Restrictions(&messages.RestrictionsRequest{Caller: caller}, opts...)
	})
}

// restrict answers POST /v1/patients/{id}/restrictions {kind, target_id}:
// 201 with the list when the restriction is new, 200 when it already held.
func (s *Server) restrict(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Kind     string `json:"kind"`
		TargetID string `json:"target_id"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	req := &messages.RestrictRequest{RestrictionId: uuid.NewString(), Kind: in.Kind, TargetId: normalUUID(in.TargetID)}
	return s.restrictionCall(c, fiber.StatusCreated, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.RestrictionsReply, error) {
		req.Caller = caller
		return g.Restrict(req, opts...)
	})
}

// liftRestriction answers DELETE /v1/patients/{id}/restrictions/{restriction}.
func (s *Server) liftRestriction(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	rid, err := idParam(c, "restriction")
	if err != nil {
		return err
	}
	return s.restrictionCall(c, fiber.StatusOK, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.RestrictionsReply, error) {
		return g.LiftRestriction(&messages.LiftRestrictionRequest{Caller: caller, RestrictionId: rid}, opts...)
	})
}

// restrictionCall calls the patient's grain and answers the restrictions,
// with the doctors' and clinics' names; created answers status (201) only
// for a new restriction.
func (s *Server) restrictionCall(c *fiber.Ctx, created int, call func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.RestrictionsReply, error)) error {
	reply, err := patientRequest(s, c, call)
	if err != nil {
		return err
	}
	var targets []string
	for _, r := range reply.Restrictions {
		targets = append(targets, r.TargetId)
	}
	ctx := c.UserContext()
	doctors := names(s, ctx, "doctors", func(n Names) (map[string]string, error) { return n.DoctorNames(ctx, targets) })
	clinics := names(s, ctx, "clinics", func(n Names) (map[string]string, error) { return n.ClinicNames(ctx, targets) })
	out := struct {
		Restrictions []restrictionJSON `json:"restrictions"`
	}{Restrictions: make([]restrictionJSON, 0, len(reply.Restrictions))}
	for _, r := range reply.Restrictions {
		j := restrictionJSON{ID: r.Id, Kind: r.Kind, TargetID: r.TargetId, TargetName: doctors[r.TargetId] + clinics[r.TargetId],
			CreatedAt: instant(r.CreatedAt.AsTime()), CreatedBy: r.CreatedBy, LiftedBy: r.LiftedBy}
		if r.LiftedAt != nil {
			j.LiftedAt = instant(r.LiftedAt.AsTime())
		}
		out.Restrictions = append(out.Restrictions, j)
	}
	status := fiber.StatusOK
	if reply.Created {
		status = created
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).JSON(out)
}
