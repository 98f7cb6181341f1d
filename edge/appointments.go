package edge

import (
	"context"
	"errors"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Directory answers the lookups the edge needs to route a request to its
// grain; they read the database, never decide.
type Directory interface {
	// AppointmentDoctor names the doctor whose calendar owns an appointment
	// (persistence.ErrNoAppointment when there is none).
	AppointmentDoctor(ctx context.Context, id string) (string, error)
}

// appointmentOwners caches appointment -> doctor: it never changes.
type appointmentOwners struct {
	dir   Directory
	cache *lru.Cache[string, string]
}

func newAppointmentOwners(dir Directory) *appointmentOwners {
	c, _ := lru.New[string, string](100_000)
	return &appointmentOwners{dir: dir, cache: c}
}

func (o *appointmentOwners) doctorOf(ctx context.Context, id string) (string, error) {
	if d, ok := o.cache.Get(id); ok {
		return d, nil
	}
	if o.dir == nil {
		return "", problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "no appointment directory")
	}
	d, err := o.dir.AppointmentDoctor(ctx, id)
	switch {
	case errors.Is(err, persistence.ErrNoAppointment):
		return "", problem(fiber.StatusNotFound, "not-found", "Not found", "no such appointment")
	case err != nil:
		p := problem(fiber.StatusServiceUnavailable, "store-unavailable", "Database unavailable", "the appointment could not be looked up")
		p.retryAfter = "1"
		return "", p
	}
	o.cache.Add(id, d)
	return d, nil
}

type appointmentJSON struct {
	ID              string `json:"id"`
	DoctorID        string `json:"doctor_id"`
	DoctorName      string `json:"doctor_name,omitempty"`
	PatientID       string `json:"patient_id,omitempty"`
	PatientName     string `json:"patient_name,omitempty"`
	Start           string `json:"start"`
	End             string `json:"end"`
	DurationMinutes int32  `json:"duration_minutes"`
	Status          string `json:"status"`
	Reason          string `json:"reason,omitempty"`
	BookedBy        string `json:"booked_by,omitempty"`
	Version         int64  `json:"version"`
	CreatedAt       string `json:"created_at"`
	UpdatedAt       string `json:"updated_at"`
}

func toAppointmentJSON(a *messages.AppointmentRecord) appointmentJSON {
	start, end := a.Start.AsTime(), a.End.AsTime()
	return appointmentJSON{ID: a.Id, DoctorID: a.DoctorId, PatientID: a.PatientId, Start: instant(start), End: instant(end),
		DurationMinutes: int32(end.Sub(start) / time.Minute), Status: a.Status.Name(), Reason: a.Reason, BookedBy: a.BookedBy,
		Version: a.Version, CreatedAt: instant(a.CreatedAt.AsTime()), UpdatedAt: instant(a.UpdatedAt.AsTime())}
}

type appointmentsJSON struct {
	Appointments []appointmentJSON `json:"appointments"`
	NextCursor   string            `json:"next_cursor,omitempty"`
	// Redacted: only times and status are shown (another doctor's agenda).
	Redacted bool `json:"redacted,omitempty"`
}

func toAppointmentsJSON(as []*messages.AppointmentRecord) []appointmentJSON {
	out := make([]appointmentJSON, 0, len(as))
	for _, a := range as {
		out = append(out, toAppointmentJSON(a))
	}
	return out
}

// nameAppointments puts the doctor's and the patient's names beside their
// ids in a list the caller was allowed to see (a patient id appears only
// where the grain showed it).
func (s *Server) nameAppointments(ctx context.Context, as []appointmentJSON) {
	var doctors, patients []string
	for _, a := range as {
		doctors, patients = append(doctors, a.DoctorID), append(patients, a.PatientID)
	}
	dn := names(s, ctx, "doctors", func(n Names) (map[string]string, error) { return n.DoctorNames(ctx, doctors) })
	pn := names(s, ctx, "patients", func(n Names) (map[string]string, error) { return n.PatientNames(ctx, patients) })
	for i := range as {
		as[i].DoctorName, as[i].PatientName = dn[as[i].DoctorID], pn[as[i].PatientID]
	}
}

type bookJSON struct {
	DoctorID        string `json:"doctor_id"`
	PatientID       string `json:"patient_id"`
	Start           string `json:"start"`
	DurationMinutes int32  `json:"duration_minutes"`
	Reason          string `json:"reason"`
}

// instantField reads a required RFC 3339 instant from a body field.
func instantField(name, v string) (time.Time, *FieldError) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, &FieldError{name, "must be an RFC 3339 instant such as 2026-11-23T08:00:00Z"}
	}
	return t, nil
}

func (s *Server) book(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in bookJSON
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	var bad []FieldError
	start, fe := instantField("start", in.Start)
	if fe != nil {
		bad = append(bad, *fe)
	}
	if !isUUID(in.DoctorID) {
		bad = append(bad, FieldError{"doctor_id", "must be a doctor's id (a UUID)"})
	}
	if !isUUID(in.PatientID) {
		bad = append(bad, FieldError{"patient_id", "must be a patient's id (a UUID)"})
	}
	if in.DurationMinutes < 0 {
		bad = append(bad, FieldError{"duration_minutes", "must be positive (omit it for the doctor's slot length)"})
	}
	if len(bad) > 0 {
		return invalidInput(bad)
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	appointmentID, err := s.newID("appointment", caller.Subject, key)
	if err != nil {
		return err
	}
	req := &messages.BookRequest{Caller: caller, AppointmentId: appointmentID,
		PatientId: normalUUID(in.PatientID), Start: timestamppb.New(start), DurationMinutes: in.DurationMinutes, Reason: in.Reason}
	reply, err := calendarCall(s, c, normalUUID(in.DoctorID), func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AppointmentReply, error) {
		return g.Book(req, opts...)
	})
	if err != nil {
		return err
	}
	if reply.Replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	c.Location("/v1/appointments/" + reply.Appointment.Id)
	return s.appointmentReply(c, fiber.StatusCreated, reply)
}

func (s *Server) appointmentReply(c *fiber.Ctx, status int, reply *messages.AppointmentReply) error {
	c.Set(fiber.HeaderETag, etag(reply.Appointment.Version))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).JSON(toAppointmentJSON(reply.Appointment))
}

// appointmentCall reads :id, finds the appointment's calendar and calls it.
func appointmentCall(s *Server, c *fiber.Ctx, call func(id string, caller *messages.Caller, g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AppointmentReply, error)) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	doctor, err := s.owners.doctorOf(c.UserContext(), id)
	if err != nil {
		return err
	}
	reply, err := calendarCall(s, c, doctor, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AppointmentReply, error) {
		return call(id, caller, g, opts...)
	})
	if err != nil {
		return err
	}
	return s.appointmentReply(c, fiber.StatusOK, reply)
}

func (s *Server) getAppointment(c *fiber.Ctx) error {
	return appointmentCall(s, c, func(id string, caller *messages.Caller, g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AppointmentReply, error) {
		return g.GetAppointment(&messages.GetAppointmentRequest{Caller: caller, AppointmentId: id}, opts...)
	})
}

// transition returns the handler of one status change.
func (s *Server) transition(action messages.AppointmentAction) fiber.Handler {
	return func(c *fiber.Ctx) error { // the action says it all: no body
		if err := noBody(c); err != nil {
			return err
		}
		return appointmentCall(s, c, func(id string, caller *messages.Caller, g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AppointmentReply, error) {
			return g.Transition(&messages.TransitionRequest{Caller: caller, AppointmentId: id, Action: action}, opts...)
		})
	}
}

func (s *Server) reschedule(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Start string `json:"start"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	start, fe := instantField("start", in.Start)
	if fe != nil {
		return invalidInput([]FieldError{*fe})
	}
	return appointmentCall(s, c, func(id string, caller *messages.Caller, g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AppointmentReply, error) {
		return g.Reschedule(&messages.RescheduleRequest{Caller: caller, AppointmentId: id, Start: timestamppb.New(start)}, opts...)
	})
}

func (s *Server) patientAppointments(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.AppointmentsReply, error) {
		return g.Appointments(&messages.PatientAppointmentsRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	list := toAppointmentsJSON(reply.Appointments)
	s.nameAppointments(c.UserContext(), list)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(appointmentsJSON{Appointments: list, NextCursor: reply.NextCursor})
}

func (s *Server) doctorAgenda(c *fiber.Ctx) error {
	id, from, to, caller, err := s.doctorRange(c)
	if err != nil {
		return err
	}
	req := &messages.AgendaRequest{Caller: caller, From: from, To: to}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AgendaReply, error) {
		return g.Agenda(req, opts...)
	})
	if err != nil {
		return err
	}
	list := toAppointmentsJSON(reply.Appointments)
	s.nameAppointments(c.UserContext(), list)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(appointmentsJSON{Appointments: list, Redacted: reply.Redacted})
}
