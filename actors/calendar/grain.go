package calendar

import (
	"bytes"

	"github.com/caregrid/caregrid/internal/tracing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/proof"

	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Deps are what every calendar grain of a process shares.
type Deps struct {
	// Proof proves the caller of every request before the grain sees it
	// (actors/proof); nil refuses every request.
	Proof        *proof.Checker
	DB           *persistence.DB
	Audit        audit.Recorder
	Logger       *slog.Logger
	Now          func() time.Time
	StoreTimeout time.Duration
	// HoldTTL is how long a booking hold lasts (DefaultHoldTTL when zero).
	HoldTTL time.Duration
	// CheckInOpens is how long before its start an appointment can be
	// checked in (DefaultCheckInOpens when zero).
	CheckInOpens time.Duration
	// Stats counts how bookings were written (optional).
	Stats *Stats
	// Commits groups the grains' batches across doctors (nil: each grain
	// writes its own).
	Commits *Committer
}

// Stats counts the bookings the grains of a process confirmed, by how they
// were written: at once (the patient accepted before the hold's batch
// left: one write), or as a durable hold then a confirm (two writes).
type Stats struct {
	WrittenAtOnce, HeldThenConfirmed atomic.Int64
}

// Kind registers the calendar grain kind (one per doctor).
func Kind(deps Deps, idle time.Duration) *actorcluster.Kind {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.StoreTimeout <= 0 {
		deps.StoreTimeout = 3 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.HoldTTL <= 0 {
		deps.HoldTTL = DefaultHoldTTL
	}
	return messages.NewCalendarKind(func() messages.Calendar { return &Grain{deps: deps} }, idle, actor.WithReceiverMiddleware(deps.Proof.Middleware(proof.Policy{Service: "Calendar"})))
}

// Grain is one doctor's calendar: their profile, working hours and
// appointments, decided one request at a time (booking: booking_grain.go).
type Grain struct {
	// self names this activation for its request's trace (tracing.Background).
	self   string
	deps   Deps
	id     string
	owner  string
	system *actor.ActorSystem

	loaded      bool
	doc         *messages.DoctorRecord // nil: no such doctor
	hoursMsg    *messages.Availability
	hours       *Availability
	fingerprint []byte
	fence       persistence.Fence

	appts map[string]*messages.AppointmentRecord // those that hold time, from LoadSince on
	fps   map[string][]byte                      // their request fingerprints
	busy  Schedule
	ops   map[string]*op // by appointment id
	// unwritten are the holds of bookings whose patient has not answered
	// yet: in memory only, so ending one writes nothing.
	unwritten map[string]bool

	batch   *persistence.CalendarBatch // the next group commit
	dones   []func(taken map[string]bool)
	writing bool
	// answers gathers the replies of a committed batch's continuations while
	// collecting is set, so that their audit events go in one append.
	answers    []audit.Answer
	collecting bool
	// durable gathers likewise the replies whose audit events the batch
	// wrote itself (auditInBatch): they are sent once the shard is asked to
	// chain them, whatever it answers.
	durable []audit.Answer
	gen     int // bumped when state is dropped: older continuations do nothing
}

// LoadSince is how far back an activation keeps appointments in memory:
// the day's work (check-in, complete) is decided from memory, older
// appointments are read from the database when asked for.
const LoadSince = 24 * time.Hour

func (g *Grain) Init(ctx actorcluster.GrainContext) {
	g.self = ctx.Self().String()
	g.id = ctx.Identity()
	g.owner = ctx.Cluster().ActorSystem.Address()
	g.system = ctx.ActorSystem()
	g.reset()
}

func (g *Grain) reset() {
	g.loaded, g.doc, g.hoursMsg, g.hours, g.fence = false, nil, nil, nil, persistence.Fence{}
	g.appts, g.fps, g.busy, g.ops = map[string]*messages.AppointmentRecord{}, map[string][]byte{}, Schedule{}, map[string]*op{}
	g.unwritten = map[string]bool{}
	g.batch, g.dones, g.writing = nil, nil, false
	g.gen++
}

func (g *Grain) Terminate(actorcluster.GrainContext) {}

func (g *Grain) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(tracing.Background(g.self), g.deps.StoreTimeout)
}

func (g *Grain) load() error {
	if g.loaded {
		return nil
	}
	if !validate.ID(g.id) {
		g.loaded = true
		return nil
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	sd, f, err := g.deps.DB.LoadDoctor(ctx, g.id, g.owner, g.deps.Now().Add(-LoadSince))
	if err != nil {
		return err
	}
	g.loaded, g.fence = true, f
	if sd == nil {
		return nil
	}
	for _, sa := range sd.Appointments {
		g.place(sa.Record, sa.Fingerprint)
	}
	return g.set(sd.Record, sd.Availability, sd.Fingerprint)
}

// set installs a loaded or written state.
func (g *Grain) set(d *messages.DoctorRecord, hours *messages.Availability, fp []byte) error {
	zone, err := time.LoadLocation(d.TimeZone)
	if err != nil {
		return err
	}
	parsed, err := ParseAvailability(hours, zone, int(d.SlotMinutes))
	if err != nil {
		return err
	}
	g.doc, g.hoursMsg, g.hours, g.fingerprint = d, hours, parsed, fp
	return nil
}

// drop forgets everything and stops the activation; operations in flight
// must have been answered (fail).
func (g *Grain) drop(ctx actorcluster.GrainContext) {
	g.reset()
	ctx.Poison(ctx.Self())
}

// storeError turns a persistence error into the reply, answers every
// operation in flight with it, and drops the activation: after a failed or
// fenced write, memory may not match the database.
func (g *Grain) storeError(ctx actorcluster.GrainContext, op string, err error) error {
	reply := messages.ErrStoreUnavailable("calendar store unavailable")
	if errors.Is(err, persistence.ErrFenced) {
		reply = messages.ErrFenced("calendar %s moved to another activation", g.id)
	} else {
		g.deps.Logger.Error("calendar store failed", "op", op, "doctor", g.id, "error", err)
	}
	for _, o := range g.ops {
		for _, w := range o.waiters {
			ctx.Send(w.sender, reply)
		}
	}
	g.drop(ctx)
	return reply
}

// written returns ctx for a write of the doctor's data whose audit event
// (on resource) is written in the write's own transaction.
func (g *Grain) written(ctx context.Context, c *messages.Caller, action messages.AuditAction, resource string) context.Context {
	return g.deps.Audit.InWrite(ctx, audit.Event(c, action, resource, g.id, "", messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", g.deps.Now()))
}

// record audits a change to the doctor's data (staff data: resource doctor).
func (g *Grain) record(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, resource string, outcome messages.AuditOutcome, detail string) error {
	e := audit.Event(c, action, resource, g.id, "", outcome, detail, g.deps.Now())
	return g.deps.Audit.Access(e)
}

func (g *Grain) refuse(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, resource string, reply *actorcluster.GrainErrorResponse) error {
	if err := g.record(ctx, c, action, resource, audit.OutcomeOf(reply), reply.Reason); err != nil {
		return err
	}
	return reply
}

func (g *Grain) CreateDoctor(req *messages.CreateDoctorRequest, ctx actorcluster.GrainContext) (*messages.DoctorReply, error) {
	c := req.GetCaller()
	if d := access.ManageDirectory(c); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "doctor", messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	fp := Fingerprint(req.GetDoctor())
	if g.doc != nil {
		if req.IdempotencyKey == "" || !bytes.Equal(g.fingerprint, fp) {
			return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "doctor", messages.ErrAlreadyExists("doctor %s already exists", g.id).
				WithMetadata(map[string]string{"id": g.id}))
		}
		if err := g.record(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "doctor", messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
			return nil, err
		}
		return &messages.DoctorReply{Doctor: g.doc, Replayed: true}, nil
	}
	doc, err := NewDoctor(g.id, req.GetDoctor(), g.deps.Now())
	if err == nil && !validate.ID(g.id) {
		err = validate.Errors{{Field: "id", Message: "must be a lower-case UUID"}}
	}
	if err != nil {
		ctx.Poison(ctx.Self())
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "doctor", validate.Reply(err))
	}
	hours := &messages.Availability{SlotMinutes: doc.SlotMinutes}
	sctx, cancel := g.storeCtx()
	defer cancel()
	f, err := g.deps.DB.CreateDoctor(g.written(sctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "doctor"), g.owner, doc, hours, fp,
		&messages.DoctorChanged{Caller: c, Doctor: doc, Availability: hours})
	switch {
	case errors.Is(err, persistence.ErrNoClinic):
		cluster.PassivateSoon(ctx)
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "doctor", messages.ErrInvalidArgument("no such clinic").
			WithMetadata(map[string]string{"field:clinic_id": "names no clinic"}))
	case errors.Is(err, persistence.ErrExists):
		g.loaded = false // another activation created it: answer from its row
		if err := g.load(); err != nil {
			return nil, g.storeError(ctx, "load", err)
		}
		return g.CreateDoctor(req, ctx)
	case err != nil:
		return nil, g.storeError(ctx, "create", err)
	}
	if err := g.set(doc, hours, fp); err != nil {
		return nil, g.storeError(ctx, "create", err)
	}
	g.fence = f
	g.deps.Audit.Drain(g.deps.Logger)
	return &messages.DoctorReply{Doctor: doc}, nil
}

// found loads the doctor for a read and says whether there is one.
func (g *Grain) found(ctx actorcluster.GrainContext) (bool, error) {
	if err := g.load(); err != nil {
		return false, g.storeError(ctx, "load", err)
	}
	if g.doc == nil {
		cluster.PassivateSoon(ctx)
		return false, messages.ErrNotFound("no doctor %s", g.id)
	}
	return true, nil
}

func (g *Grain) GetDoctor(req *messages.GetDoctorRequest, ctx actorcluster.GrainContext) (*messages.DoctorReply, error) {
	if d := access.ReadDirectory(req.GetCaller()); !d.Allowed {
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	return &messages.DoctorReply{Doctor: g.doc}, nil
}

// save writes the doctor's new profile and hours through the fence, with
// the change's audit event (its resource) in the same transaction.
func (g *Grain) save(ctx actorcluster.GrainContext, c *messages.Caller, resource string, doc *messages.DoctorRecord, hours *messages.Availability) error {
	sctx, cancel := g.storeCtx()
	defer cancel()
	event := &messages.DoctorChanged{Caller: c, Doctor: doc, Availability: hours}
	err := g.deps.DB.UpdateDoctor(g.written(sctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, resource), g.fence, doc, hours, g.doc.Version, event)
	if errors.Is(err, persistence.ErrNoClinic) {
		return messages.ErrInvalidArgument("no such clinic").WithMetadata(map[string]string{"field:clinic_id": "names no clinic"})
	}
	if err != nil {
		return g.storeError(ctx, "update", err)
	}
	if err := g.set(doc, hours, g.fingerprint); err != nil {
		return g.storeError(ctx, "update", err)
	}
	g.deps.Audit.Drain(g.deps.Logger)
	return nil
}

func (g *Grain) UpdateDoctor(req *messages.UpdateDoctorRequest, ctx actorcluster.GrainContext) (*messages.DoctorReply, error) {
	c := req.GetCaller()
	if d := access.ManageDirectory(c); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "doctor", messages.ErrPermissionDenied("%s", d.Reason))
	}
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	if req.ExpectedVersion > g.doc.Version {
		// A stale duplicate only if the database has the caller's version
		// (see the patient grain's Update); otherwise a plain mismatch.
		sctx, cancel := g.storeCtx()
		stored, err := g.deps.DB.StoredVersion(sctx, "doctors", g.id)
		cancel()
		if err != nil {
			return nil, g.storeError(ctx, "version", err)
		}
		if stored > g.doc.Version {
			g.drop(ctx)
			return nil, messages.ErrFenced("calendar %s: this activation is behind", g.id)
		}
	}
	next, err := ApplyDoctorUpdate(g.doc, req, g.deps.Now())
	var stale VersionError
	switch {
	case errors.As(err, &stale):
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "doctor", messages.ErrVersionMismatch("%s", stale.Error()).
			WithMetadata(map[string]string{"version": strconv.FormatInt(g.doc.Version, 10)}))
	case err != nil:
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "doctor", validate.Reply(err))
	}
	// The hours are kept in the doctor's zone: check they still parse there.
	if _, err := time.LoadLocation(next.TimeZone); err != nil {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "doctor", validate.Reply(err))
	}
	if err := g.save(ctx, c, "doctor", next, g.hoursMsg); err != nil {
		var ge *actorcluster.GrainErrorResponse
		if errors.As(err, &ge) && ge.Reason == messages.ErrorReason_INVALID_ARGUMENT.String() {
			return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "doctor", ge)
		}
		return nil, err
	}
	return &messages.DoctorReply{Doctor: g.doc}, nil
}

func (g *Grain) SetAvailability(req *messages.SetAvailabilityRequest, ctx actorcluster.GrainContext) (*messages.AvailabilityReply, error) {
	c := req.GetCaller()
	if d := access.SetAvailability(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "availability", messages.ErrPermissionDenied("%s", d.Reason))
	}
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	hours := proto.Clone(req.GetAvailability()).(*messages.Availability)
	if hours.SlotMinutes == 0 {
		hours.SlotMinutes = g.doc.SlotMinutes
	}
	if _, err := ParseAvailability(hours, g.hours.Zone, int(g.doc.SlotMinutes)); err != nil {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, "availability", validate.Reply(err))
	}
	next := proto.Clone(g.doc).(*messages.DoctorRecord)
	next.Version++
	next.UpdatedAt = timestamppb.New(g.deps.Now().UTC().Truncate(time.Microsecond))
	if err := g.save(ctx, c, "availability", next, hours); err != nil {
		return nil, err
	}
	return &messages.AvailabilityReply{Availability: g.hoursMsg, Version: g.doc.Version}, nil
}

func (g *Grain) GetAvailability(req *messages.GetAvailabilityRequest, ctx actorcluster.GrainContext) (*messages.AvailabilityReply, error) {
	if d := access.ReadDirectory(req.GetCaller()); !d.Allowed {
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	return &messages.AvailabilityReply{Availability: g.hoursMsg, Version: g.doc.Version}, nil
}

func (g *Grain) FreeSlots(req *messages.FreeSlotsRequest, ctx actorcluster.GrainContext) (*messages.FreeSlotsReply, error) {
	if d := access.ReadDirectory(req.GetCaller()); !d.Allowed {
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	from, to := req.GetFrom().AsTime(), req.GetTo().AsTime()
	if req.GetFrom() == nil || req.GetTo() == nil || !from.Before(to) || to.Sub(from) > MaxSlotsWindow {
		return nil, messages.ErrInvalidArgument("from must be before to, at most 31 days apart").
			WithMetadata(map[string]string{"field:to": "must be after from and at most 31 days later"})
	}
	reply := &messages.FreeSlotsReply{}
	for _, s := range FreeSlots(g.hours, &g.busy, from, to, g.deps.Now()) {
		reply.Slots = append(reply.Slots, &messages.Slot{Start: timestamppb.New(s.Start), End: timestamppb.New(s.End)})
	}
	return reply, nil
}
