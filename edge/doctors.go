package edge

import (
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type clinicJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Address   string `json:"address"`
	TimeZone  string `json:"time_zone"`
	Version   int64  `json:"version"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

type clinicInput struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	TimeZone string `json:"time_zone"`
}

type doctorJSON struct {
	ID          string `json:"id"`
	GivenName   string `json:"given_name"`
	FamilyName  string `json:"family_name"`
	Specialty   string `json:"specialty"`
	ClinicID    string `json:"clinic_id"`
	Email       string `json:"email,omitempty"`
	Phone       string `json:"phone,omitempty"`
	TimeZone    string `json:"time_zone"`
	SlotMinutes int32  `json:"slot_minutes"`
	Version     int64  `json:"version"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
}

type doctorInput struct {
	GivenName   string `json:"given_name"`
	FamilyName  string `json:"family_name"`
	Specialty   string `json:"specialty"`
	ClinicID    string `json:"clinic_id"`
	Email       string `json:"email"`
	Phone       string `json:"phone"`
	TimeZone    string `json:"time_zone"`
	SlotMinutes int32  `json:"slot_minutes"`
}

type rangeJSON struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type weeklyJSON struct {
	Weekday string      `json:"weekday"`
	Ranges  []rangeJSON `json:"ranges"`
}

type exceptionJSON struct {
	Date   string      `json:"date"`
	Ranges []rangeJSON `json:"ranges"`
}

type availabilityJSON struct {
	SlotMinutes int32           `json:"slot_minutes"`
	Weekly      []weeklyJSON    `json:"weekly"`
	Exceptions  []exceptionJSON `json:"exceptions"`
}

type slotJSON struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

func toClinicJSON(c *messages.ClinicRecord) clinicJSON {
	return clinicJSON{ID: c.Id, Name: c.Name, Address: c.Address, TimeZone: c.TimeZone, Version: c.Version,
		CreatedAt: instant(c.CreatedAt.AsTime()), UpdatedAt: instant(c.UpdatedAt.AsTime())}
}

func toDoctorJSON(d *messages.DoctorRecord) doctorJSON {
	return doctorJSON{ID: d.Id, GivenName: d.GivenName, FamilyName: d.FamilyName, Specialty: d.Specialty,
		ClinicID: d.ClinicId, Email: d.Email, Phone: d.Phone, TimeZone: d.TimeZone, SlotMinutes: d.SlotMinutes,
		Version: d.Version, CreatedAt: instant(d.CreatedAt.AsTime()), UpdatedAt: instant(d.UpdatedAt.AsTime())}
}

func ranges(in []rangeJSON) []*messages.TimeRange {
	out := make([]*messages.TimeRange, 0, len(in))
	for _, r := range in {
		out = append(out, &messages.TimeRange{Start: r.Start, End: r.End})
	}
	return out
}

func rangesJSON(in []*messages.TimeRange) []rangeJSON {
	out := make([]rangeJSON, 0, len(in))
	for _, r := range in {
		out = append(out, rangeJSON{Start: r.Start, End: r.End})
	}
	return out
}

func (a availabilityJSON) message() *messages.Availability {
	m := &messages.Availability{SlotMinutes: a.SlotMinutes}
	for _, w := range a.Weekly {
		m.Weekly = append(m.Weekly, &messages.WeeklyHours{Weekday: w.Weekday, Ranges: ranges(w.Ranges)})
	}
	for _, x := range a.Exceptions {
		m.Exceptions = append(m.Exceptions, &messages.DateException{Date: x.Date, Ranges: ranges(x.Ranges)})
	}
	return m
}

func toAvailabilityJSON(m *messages.Availability) availabilityJSON {
	out := availabilityJSON{SlotMinutes: m.GetSlotMinutes(), Weekly: []weeklyJSON{}, Exceptions: []exceptionJSON{}}
	for _, w := range m.GetWeekly() {
		out.Weekly = append(out.Weekly, weeklyJSON{Weekday: w.Weekday, Ranges: rangesJSON(w.Ranges)})
	}
	for _, x := range m.GetExceptions() {
		out.Exceptions = append(out.Exceptions, exceptionJSON{Date: x.Date, Ranges: rangesJSON(x.Ranges)})
	}
	return out
}

func calendarCall[T any](s *Server, c *fiber.Ctx, id string, call func(*messages.CalendarGrainClient, ...actorcluster.GrainCallOption) (T, error)) (T, error) {
	return callGrain(s, c, "Calendar", id, messages.GetCalendarGrainClient, call)
}

func (s *Server) createClinic(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in clinicInput
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	id, err := s.newID("clinic", caller.Subject, key)
	if err != nil {
		return err
	}
	req := &messages.CreateClinicRequest{Caller: caller, IdempotencyKey: key,
		Clinic: &messages.ClinicRecord{Name: in.Name, Address: in.Address, TimeZone: in.TimeZone}}
	reply, err := callGrain(s, c, "Clinic", id, messages.GetClinicGrainClient,
		func(g *messages.ClinicGrainClient, opts ...actorcluster.GrainCallOption) (*messages.ClinicReply, error) {
			return g.Create(req, opts...)
		})
	if err != nil {
		return err
	}
	if reply.Replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	c.Location("/v1/clinics/" + reply.Clinic.Id)
	c.Set(fiber.HeaderETag, etag(reply.Clinic.Version))
	return c.Status(fiber.StatusCreated).JSON(toClinicJSON(reply.Clinic))
}

func (s *Server) getClinic(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.GetClinicRequest{Caller: caller}
	reply, err := callGrain(s, c, "Clinic", id, messages.GetClinicGrainClient,
		func(g *messages.ClinicGrainClient, opts ...actorcluster.GrainCallOption) (*messages.ClinicReply, error) {
			return g.Get(req, opts...)
		})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Clinic.Version))
	return c.JSON(toClinicJSON(reply.Clinic))
}

// updateClinic answers PATCH /v1/clinics/{id} (JSON merge patch of name,
// address, time_zone; If-Match the version read).
func (s *Server) updateClinic(c *fiber.Ctx) error {
	id, version, fields, err := mergePatch(c)
	if err != nil {
		return err
	}
	in := &messages.ClinicRecord{}
	mask := &fieldmaskpb.FieldMask{}
	targets := map[string]*string{"name": &in.Name, "address": &in.Address, "time_zone": &in.TimeZone}
	var bad []FieldError
	for name, raw := range fields {
		target, ok := targets[name]
		switch {
		case ok:
			if err := mergeValue(name, raw, target); err != nil {
				return err
			}
			mask.Paths = append(mask.Paths, name)
		case name == "id", name == "version", name == "created_at", name == "updated_at":
			bad = append(bad, FieldError{name, "cannot be changed"})
		default:
			return malformed("the body has a field this API does not know", FieldError{name, "is not a known field"})
		}
	}
	if len(bad) > 0 {
		return invalidInput(bad)
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.UpdateClinicRequest{Caller: caller, ExpectedVersion: version, Clinic: in, UpdateMask: mask}
	reply, err := callGrain(s, c, "Clinic", id, messages.GetClinicGrainClient,
		func(g *messages.ClinicGrainClient, opts ...actorcluster.GrainCallOption) (*messages.ClinicReply, error) {
			return g.Update(req, opts...)
		})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Clinic.Version))
	return c.JSON(toClinicJSON(reply.Clinic))
}

func (s *Server) createDoctor(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in doctorInput
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	id, err := s.newID("doctor", caller.Subject, key)
	if err != nil {
		return err
	}
	req := &messages.CreateDoctorRequest{Caller: caller, IdempotencyKey: key, Doctor: &messages.DoctorRecord{
		GivenName: in.GivenName, FamilyName: in.FamilyName, Specialty: in.Specialty, ClinicId: in.ClinicID,
		Email: in.Email, Phone: in.Phone, TimeZone: in.TimeZone, SlotMinutes: in.SlotMinutes}}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.DoctorReply, error) {
		return g.CreateDoctor(req, opts...)
	})
	if err != nil {
		return err
	}
	if reply.Replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	c.Location("/v1/doctors/" + reply.Doctor.Id)
	c.Set(fiber.HeaderETag, etag(reply.Doctor.Version))
	return c.Status(fiber.StatusCreated).JSON(toDoctorJSON(reply.Doctor))
}

func (s *Server) getDoctor(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.GetDoctorRequest{Caller: caller}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.DoctorReply, error) {
		return g.GetDoctor(req, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Doctor.Version))
	return c.JSON(toDoctorJSON(reply.Doctor))
}

func (s *Server) updateDoctor(c *fiber.Ctx) error {
	id, version, fields, err := mergePatch(c)
	if err != nil {
		return err
	}
	d := &messages.DoctorRecord{}
	mask := &fieldmaskpb.FieldMask{}
	var bad []FieldError
	stringFields := map[string]*string{"given_name": &d.GivenName, "family_name": &d.FamilyName, "specialty": &d.Specialty,
		"clinic_id": &d.ClinicId, "email": &d.Email, "phone": &d.Phone, "time_zone": &d.TimeZone}
	for name, raw := range fields {
		var err error
		target, isString := stringFields[name]
		switch {
		case isString:
			err = mergeValue(name, raw, target)
		case name == "slot_minutes":
			err = mergeValue(name, raw, &d.SlotMinutes)
		case name == "id", name == "version", name == "created_at", name == "updated_at":
			bad = append(bad, FieldError{name, "cannot be changed"})
			continue
		default:
			return malformed("the body has a field this API does not know", FieldError{name, "is not a known field"})
		}
		if err != nil {
			return err
		}
		mask.Paths = append(mask.Paths, name)
	}
	if len(bad) > 0 {
		return invalidInput(bad)
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.UpdateDoctorRequest{Caller: caller, ExpectedVersion: version, Doctor: d, UpdateMask: mask}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.DoctorReply, error) {
		return g.UpdateDoctor(req, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Doctor.Version))
	return c.JSON(toDoctorJSON(reply.Doctor))
}

func (s *Server) setAvailability(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in availabilityJSON
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.SetAvailabilityRequest{Caller: caller, Availability: in.message()}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AvailabilityReply, error) {
		return g.SetAvailability(req, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Version))
	return c.JSON(toAvailabilityJSON(reply.Availability))
}

func (s *Server) getAvailability(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.GetAvailabilityRequest{Caller: caller}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.AvailabilityReply, error) {
		return g.GetAvailability(req, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Version))
	return c.JSON(toAvailabilityJSON(reply.Availability))
}

// instantParam reads a required RFC 3339 query parameter.
func instantParam(c *fiber.Ctx, name string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, c.Query(name))
	if err != nil {
		return time.Time{}, malformed(name+" must be an RFC 3339 instant such as 2026-11-23T08:00:00Z",
			FieldError{name, "must be an RFC 3339 instant"})
	}
	return t, nil
}

// doctorRange reads a doctor route's :id, from and to, and the caller.
func (s *Server) doctorRange(c *fiber.Ctx) (id string, from, to *timestamppb.Timestamp, caller *messages.Caller, err error) {
	if id, err = uuidParam(c); err != nil {
		return
	}
	var f, t time.Time
	if f, err = instantParam(c, "from"); err != nil {
		return
	}
	if t, err = instantParam(c, "to"); err != nil {
		return
	}
	caller, err = s.caller(c)
	return id, timestamppb.New(f), timestamppb.New(t), caller, err
}

func (s *Server) doctorSlots(c *fiber.Ctx) error {
	id, from, to, caller, err := s.doctorRange(c)
	if err != nil {
		return err
	}
	req := &messages.FreeSlotsRequest{Caller: caller, From: from, To: to}
	reply, err := calendarCall(s, c, id, func(g *messages.CalendarGrainClient, opts ...actorcluster.GrainCallOption) (*messages.FreeSlotsReply, error) {
		return g.FreeSlots(req, opts...)
	})
	if err != nil {
		return err
	}
	out := struct {
		Slots []slotJSON `json:"slots"`
	}{Slots: make([]slotJSON, 0, len(reply.Slots))}
	for _, sl := range reply.Slots {
		out.Slots = append(out.Slots, slotJSON{Start: instant(sl.Start.AsTime()), End: instant(sl.End.AsTime())})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}
