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
	id, err := patientID(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.CareTeamRequest{Caller: caller}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.CareTeamReply, error) {
		return g.CareTeam(req, opts...)
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
