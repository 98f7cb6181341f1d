package edge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
)

// Day list page sizes: a clinic's day, not a register to walk.
const (
	defaultDayLimit = 200
	maxDayLimit     = 500
)

// listAppointments answers GET /v1/appointments?clinic=&doctor=&date=&status=&limit=&cursor=:
// a day's appointments at a clinic or of a doctor, by start, with the
// doctor's and the patient's names (the desk's list of who comes today).
// Staff only. A doctor sees other doctors' appointments as times only (as
// their agendas); every appointment shown in full is recorded in its
// patient's access log before the page is answered.
func (s *Server) listAppointments(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if view, d := access.ReadAgenda(caller, ""); view == access.AgendaDenied { // patients: /v1/patients/{id}/appointments
		return forbidden(d.Reason)
	}
	q, err := dayQuery(c)
	if err != nil {
		return err
	}
	if s.cfg.Lists == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no appointment lists")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	found, err := s.cfg.Lists.DayAppointments(ctx, q)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	more := len(found) > q.Limit
	if more {
		found = found[:q.Limit]
	}
	list := toAppointmentsJSON(found)
	var shown []listed
	redacted := false
	for i, a := range found {
		if view, _ := access.ReadAgenda(caller, a.DoctorId); view != access.AgendaFull {
			list[i].PatientID, list[i].Reason, list[i].BookedBy = "", "", ""
			redacted = true
			continue
		}
		shown = append(shown, listed{a.Id, a.PatientId})
	}
	if err := s.auditListed(ctx, caller, messages.AuditAction_AUDIT_ACTION_LIST, "appointment", shown); err != nil {
		return err
	}
	s.nameAppointments(ctx, list)
	out := appointmentsJSON{Appointments: list, Redacted: redacted}
	if more {
		last := found[len(found)-1]
		out.NextCursor = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d,%s", last.Start.AsTime().UnixMicro(), last.Id))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// dayQuery reads the query of GET /v1/appointments.
func dayQuery(c *fiber.Ctx) (persistence.DayQuery, error) {
	q := persistence.DayQuery{Clinic: c.Query("clinic"), Doctor: c.Query("doctor"), Limit: defaultDayLimit}
	var bad []FieldError
	for _, f := range []struct {
		name string
		v    *string
	}{{"clinic", &q.Clinic}, {"doctor", &q.Doctor}} {
		if *f.v != "" && !isUUID(*f.v) {
			bad = append(bad, FieldError{f.name, "must be a UUID"})
		}
		*f.v = normalUUID(*f.v)
	}
	if q.Clinic == "" && q.Doctor == "" {
		bad = append(bad, FieldError{"clinic", "a clinic or a doctor is required"})
	}
	date, err := time.Parse(time.DateOnly, c.Query("date"))
	if err != nil {
		bad = append(bad, FieldError{"date", "must be a date YYYY-MM-DD"})
	}
	q.Date = date
	if raw := c.Query("status"); raw != "" {
		for _, name := range strings.Split(raw, ",") {
			st, ok := messages.ParseAppointmentStatus(name)
			if !ok || st == messages.AppointmentStatus_APPOINTMENT_STATUS_HELD || st == messages.AppointmentStatus_APPOINTMENT_STATUS_RELEASED ||
				st == messages.AppointmentStatus_APPOINTMENT_STATUS_EXPIRED {
				bad = append(bad, FieldError{"status", "must be booked, checked_in, completed, no_show or cancelled, comma-separated"})
				break
			}
			q.Statuses = append(q.Statuses, st.Name())
		}
	}
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxDayLimit {
			bad = append(bad, FieldError{"limit", "must be 1 to 500"})
		}
		q.Limit = n
	}
	if raw := c.Query("cursor"); raw != "" {
		b, err := base64.RawURLEncoding.DecodeString(raw)
		micros, id, ok := strings.Cut(string(b), ",")
		n, aerr := strconv.ParseInt(micros, 10, 64)
		if err != nil || !ok || aerr != nil || !isUUID(id) {
			bad = append(bad, FieldError{"cursor", "must be a next_cursor from a previous page"})
		}
		q.AfterStart, q.AfterID = time.UnixMicro(n).UTC(), normalUUID(id)
	}
	if len(bad) > 0 {
		return q, malformed("the query is not valid; see errors", bad...)
	}
	q.Limit++ // one more tells whether a page follows
	return q, nil
}

// pharmacyPrescriptions answers GET /v1/prescriptions?patient_idnp=&status=active:
// what a pharmacy may dispense to the patient at its counter (services
// only, active only). The patient's grain decides and records the read in
// the patient's access log, as for any list of their prescriptions.
func (s *Server) pharmacyPrescriptions(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if caller.GetRole() != messages.Role_ROLE_SERVICE { // the grain proves the caller again
		return forbidden("only pharmacy services find prescriptions by IDNP")
	}
	idnp, status := strings.TrimSpace(c.Query("patient_idnp")), c.Query("status")
	var bad []FieldError
	if !patient.ValidIDNP(idnp) {
		bad = append(bad, FieldError{"patient_idnp", "must be a patient's IDNP (13 digits with a valid check digit)"})
	}
	if status != "active" {
		bad = append(bad, FieldError{"status", "must be active: pharmacies list what they may dispense"})
	}
	if len(bad) > 0 {
		return malformed("the query is not valid; see errors", bad...)
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	if s.cfg.Lists == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no patient register")
	}
	id, err := s.cfg.Lists.PatientIDByIDNP(c.UserContext(), idnp)
	if errors.Is(err, pgx.ErrNoRows) {
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no patient has this IDNP")
	}
	if err != nil {
		return directoryUnavailable(s, err)
	}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PrescriptionsReply, error) {
		return g.Prescriptions(&messages.PrescriptionsRequest{Caller: caller, Limit: limit, Cursor: c.Query("cursor"),
			Status: messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE}, opts...)
	})
	if err != nil {
		return err
	}
	return prescriptionsPage(c, reply)
}
