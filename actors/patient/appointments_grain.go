package patient

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// reservationsSince is how far back reservations are loaded: only future
// time can conflict, with a margin for clocks.
const reservationsSince = time.Hour

// loadReservations reads the patient's reservations once per activation,
// after load has claimed the grain (so none that can still commit is missed).
func (g *Grain) loadReservations() error {
	if g.reservations != nil {
		return nil
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.PatientReservations(sctx, g.id, g.deps.Now().Add(-reservationsSince))
	if err != nil {
		return err
	}
	g.reservations = LoadReservations(rows)
	return nil
}

// Reserve takes on an appointment's time for the patient, unless they are
// busy then (PATIENT_OVERLAP). The calendar grain asks, for a booking or a
// reschedule; the caller is the person booking.
func (g *Grain) Reserve(req *messages.ReserveRequest, ctx actorcluster.GrainContext) (*messages.ReserveReply, error) {
	c := req.GetCaller()
	if d := access.BookFor(c, g.id); !d.Allowed {
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		cluster.PassivateSoon(ctx)
		return nil, messages.ErrNotFound("no patient %s", g.id)
	}
	if err := g.loadReservations(); err != nil {
		return nil, g.storeError(ctx, "load reservations", err)
	}
	start, end := req.GetStart().AsTime(), req.GetEnd().AsTime()
	if !validate.ID(req.GetAppointmentId()) || req.GetStart() == nil || req.GetEnd() == nil || !start.Before(end) {
		return nil, messages.ErrInvalidArgument("a reservation needs an appointment id and a time range")
	}
	now := g.deps.Now()
	g.reservations.Prune(now)
	blocking, unresolved := g.reservations.Conflict(req.AppointmentId, start, end, now)
	for blocking == "" && len(unresolved) > 0 {
		for _, id := range unresolved {
			sctx, cancel := g.storeCtx()
			a, _, err := g.deps.DB.GetAppointment(sctx, id)
			cancel()
			if err != nil && !errors.Is(err, persistence.ErrNoAppointment) {
				return nil, messages.ErrStoreUnavailable("patient store unavailable")
			}
			g.reservations.Resolve(id, a)
		}
		blocking, unresolved = g.reservations.Conflict(req.AppointmentId, start, end, now)
	}
	if blocking != "" {
		return nil, messages.ErrPatientOverlap("the patient already has an appointment at that time")
	}
	row := persistence.Reservation{AppointmentID: req.AppointmentId, DoctorID: req.DoctorId, Start: start, End: end,
		PendingUntil: req.GetPendingUntil().AsTime()}
	sctx, cancel := g.storeCtx()
	defer cancel()
	if err := g.deps.DB.ReservePatient(sctx, g.fence, g.id, row); err != nil {
		return nil, g.storeError(ctx, "reserve", err)
	}
	g.reservations.Reserve(row)
	return &messages.ReserveReply{}, nil
}

// Settle hears that an appointment changed: its entries are re-read from
// the appointment before they block anything again, and every cached
// access grant is dropped (the change may have ended one). It changes no
// stored state, so a forged or lost Settle cannot let a conflict through.
func (g *Grain) Settle(req *messages.SettleRequest, _ actorcluster.GrainContext) (*messages.SettleReply, error) {
	if g.reservations != nil {
		g.reservations.Unsure(req.GetAppointmentId())
	}
	g.treating.ForgetAll()
	return &messages.SettleReply{}, nil
}

// Appointments lists the patient's appointments in start order, paged.
func (g *Grain) Appointments(req *messages.PatientAppointmentsRequest, ctx actorcluster.GrainContext) (*messages.AppointmentsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_LIST_APPOINTMENTS
	treats, err := g.reads(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	if d := access.ReadPatientAppointments(c, g.id, treats); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = DefaultPageSize
	}
	if limit < 1 || limit > MaxPageSize {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("limit must be 1 to %d", MaxPageSize).
			WithMetadata(map[string]string{"field:limit": "must be 1 to 500"}))
	}
	after, err := decodeAppointmentCursor(req.Cursor)
	if err != nil {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("bad cursor").
			WithMetadata(map[string]string{"field:cursor": "is not a cursor this API returned"}))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	appts, err := g.deps.DB.PatientAppointments(sctx, g.id, after.start, after.id, limit+1)
	if err != nil {
		return nil, messages.ErrStoreUnavailable("patient store unavailable")
	}
	reply := &messages.AppointmentsReply{Appointments: appts}
	if len(appts) > limit {
		reply.Appointments = appts[:limit]
		last := appts[limit-1]
		reply.NextCursor = encodeAppointmentCursor(last.GetStart().AsTime(), last.Id)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}

type appointmentCursor struct {
	start time.Time
	id    string
}

func encodeAppointmentCursor(start time.Time, id string) string {
	b, _ := json.Marshal(map[string]any{"t": start.UnixMicro(), "i": id})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeAppointmentCursor(s string) (appointmentCursor, error) {
	if s == "" {
		return appointmentCursor{start: time.Unix(0, 0).UTC()}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return appointmentCursor{}, err
	}
	var c struct {
		T int64  `json:"t"`
		I string `json:"i"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return appointmentCursor{}, err
	}
	if !validate.ID(c.I) {
		return appointmentCursor{}, err
	}
	return appointmentCursor{start: time.UnixMicro(c.T).UTC(), id: c.I}, nil
}
