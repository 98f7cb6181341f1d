package edge

import (
	"context"
	"fmt"
	"strconv"

	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
)

// SlotFinder searches free slots across doctors (calendar.Finder).
type SlotFinder interface {
	Find(ctx context.Context, c *messages.Caller, q calendar.SlotQuery) ([]calendar.FoundSlot, bool, error)
}

type foundSlotJSON struct {
	DoctorID   string `json:"doctor_id"`
	DoctorName string `json:"doctor_name,omitempty"`
	ClinicID   string `json:"clinic_id"`
	ClinicName string `json:"clinic_name,omitempty"`
	Specialty  string `json:"specialty"`
	Start      string `json:"start"`
	End        string `json:"end"`
}

// findSlots answers GET /v1/slots?specialty=&clinic=&from=&to=&limit=&cursor=.
func (s *Server) findSlots(c *fiber.Ctx) error {
	from, err := instantParam(c, "from")
	if err != nil {
		return err
	}
	to, err := instantParam(c, "to")
	if err != nil {
		return err
	}
	q := calendar.SlotQuery{Specialty: c.Query("specialty"), Clinic: c.Query("clinic"), From: from, To: to, Cursor: c.Query("cursor")}
	if q.Clinic != "" {
		if !isUUID(q.Clinic) {
			return malformed("clinic must be a clinic id (UUID)", FieldError{"clinic", "must be a UUID"})
		}
		q.Clinic = normalUUID(q.Clinic)
	}
	if raw := c.Query("limit"); raw != "" {
		if q.Limit, err = strconv.Atoi(raw); err != nil || q.Limit < 1 || q.Limit > calendar.MaxFinderLimit {
			return malformed(fmt.Sprintf("limit must be a whole number from 1 to %d", calendar.MaxFinderLimit),
				FieldError{"limit", fmt.Sprintf("must be 1 to %d", calendar.MaxFinderLimit)})
		}
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if s.cfg.Slots == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no slot finder")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	found, more, err := s.cfg.Slots.Find(ctx, caller, q)
	if err != nil {
		return err
	}
	out := struct {
		Slots      []foundSlotJSON `json:"slots"`
		NextCursor string          `json:"next_cursor,omitempty"`
	}{Slots: make([]foundSlotJSON, 0, len(found))}
	var doctors, clinics []string
	for _, f := range found {
		doctors, clinics = append(doctors, f.DoctorID), append(clinics, f.ClinicID)
	}
	dn := names(s, ctx, "doctors", func(n Names) (map[string]string, error) { return n.DoctorNames(ctx, doctors) })
	cn := names(s, ctx, "clinics", func(n Names) (map[string]string, error) { return n.ClinicNames(ctx, clinics) })
	for _, f := range found {
		out.Slots = append(out.Slots, foundSlotJSON{DoctorID: f.DoctorID, DoctorName: dn[f.DoctorID], ClinicID: f.ClinicID,
			ClinicName: cn[f.ClinicID], Specialty: f.Specialty, Start: instant(f.Start), End: instant(f.End)})
	}
	if more {
		out.NextCursor = found[len(found)-1].Cursor()
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}
