package edge

import (
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
)

type careTeamJSON struct {
	Members []careTeamMemberJSON `json:"members"`
}

type careTeamMemberJSON struct {
	DoctorID string `json:"doctor_id"`
	Since    string `json:"since"`
	AddedBy  string `json:"added_by"`
}

func toCareTeamJSON(r *messages.CareTeamReply) careTeamJSON {
	out := careTeamJSON{Members: make([]careTeamMemberJSON, 0, len(r.Members))}
	for _, m := range r.Members {
		out.Members = append(out.Members, careTeamMemberJSON{DoctorID: m.DoctorId, Since: instant(m.Since.AsTime()), AddedBy: m.AddedBy})
	}
	return out
}

func (s *Server) careTeam(c *fiber.Ctx) error {
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.CareTeamReply, error) {
		return g.CareTeam(&messages.CareTeamRequest{Caller: caller}, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(toCareTeamJSON(reply))
}

// changeCareTeam adds (PUT) or removes (DELETE) a doctor; both are idempotent.
func (s *Server) changeCareTeam(remove bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := noBody(c); err != nil {
			return err
		}
		id, err := patientID(c)
		if err != nil {
			return err
		}
		doctor, err := idParam(c, "doctor")
		if err != nil {
			return err
		}
		caller, err := s.caller(c)
		if err != nil {
			return err
		}
		req := &messages.ChangeCareTeamRequest{Caller: caller, DoctorId: normalUUID(doctor), Remove: remove}
		reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.CareTeamReply, error) {
			return g.ChangeCareTeam(req, opts...)
		})
		if err != nil {
			return err
		}
		return c.JSON(toCareTeamJSON(reply))
	}
}

// accessGrantJSON is one reason a doctor may read a record now.
type accessGrantJSON struct {
	DoctorID         string `json:"doctor_id"`
	DoctorName       string `json:"doctor_name,omitempty"`
	Reason           string `json:"reason"`
	Since            string `json:"since"`
	Until            string `json:"until,omitempty"`
	AppointmentID    string `json:"appointment_id,omitempty"`
	AppointmentStart string `json:"appointment_start,omitempty"`
	DemographicsOnly bool   `json:"demographics_only,omitempty"`
}

// accessGrants answers GET /v1/patients/{id}/access-grants: every doctor
// who may read the record now, why, and until when (the patient,
// receptionists and admins; the grain decides and audits).
func (s *Server) accessGrants(c *fiber.Ctx) error {
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.AccessGrantsReply, error) {
		return g.AccessGrants(&messages.AccessGrantsRequest{Caller: caller}, opts...)
	})
	if err != nil {
		return err
	}
	var doctors []string
	for _, g := range reply.Grants {
		doctors = append(doctors, g.DoctorId)
	}
	ctx := c.UserContext()
	dn := names(s, ctx, "doctors", func(n Names) (map[string]string, error) { return n.DoctorNames(ctx, doctors) })
	out := struct {
		Grants []accessGrantJSON `json:"grants"`
	}{Grants: make([]accessGrantJSON, 0, len(reply.Grants))}
	for _, g := range reply.Grants {
		j := accessGrantJSON{DoctorID: g.DoctorId, DoctorName: dn[g.DoctorId], Reason: g.Reason, Since: instant(g.Since.AsTime()),
			AppointmentID: g.AppointmentId, DemographicsOnly: g.DemographicsOnly}
		if g.Until != nil {
			j.Until = instant(g.Until.AsTime())
		}
		if g.AppointmentStart != nil {
			j.AppointmentStart = instant(g.AppointmentStart.AsTime())
		}
		out.Grants = append(out.Grants, j)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}
