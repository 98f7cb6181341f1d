package prescription

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/internal/tracing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/proof"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/proto"
)

// Deps are what every prescription grain of a process shares.
type Deps struct {
	// Proof proves the caller of every request before the grain sees it
	// (actors/proof); nil refuses every request.
	Proof  *proof.Checker
	DB     *persistence.DB
	Audit  audit.Recorder
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// StoreTimeout bounds one database call; GrainTimeout one request to
	// the patient's grain.
	StoreTimeout, GrainTimeout time.Duration
	// Master wraps the patients' data keys.
	Master *seal.Key
	// CareWindow is how long around an appointment it lets its doctor
	// read (zero: persistence.DefaultCareWindow).
	CareWindow persistence.CareWindow
}

// Kind registers the prescription grain kind.
func Kind(deps Deps, idle time.Duration) *actorcluster.Kind {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.StoreTimeout <= 0 {
		deps.StoreTimeout = 3 * time.Second
	}
	if deps.CareWindow == (persistence.CareWindow{}) {
		deps.CareWindow = persistence.DefaultCareWindow
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return messages.NewPrescriptionKind(func() messages.Prescription { return &Grain{deps: deps} }, idle, actor.WithReceiverMiddleware(deps.Proof.Middleware(proof.Policy{Service: "Prescription", MemberOnly: []string{"Expire"}})))
}

// Grain is one prescription. It holds the record as stored (clinical text
// sealed) and writes every change through its fence, changing memory only
// after the commit.
type Grain struct {
	// self names this activation for its request's trace (tracing.Background).
	self      string
	deps      Deps
	id, owner string

	loaded bool
	stored *persistence.StoredPrescription // nil: no such prescription (yet)
	fence  persistence.Fence
	// dataKey is the patient's data key; loaded on first use.
	dataKey *seal.Key
}

func (g *Grain) Init(ctx actorcluster.GrainContext) {
	g.self = ctx.Self().String()
	g.id, g.owner = ctx.Identity(), ctx.Cluster().ActorSystem.Address()
}

func (g *Grain) Terminate(actorcluster.GrainContext)      {}
func (g *Grain) ReceiveDefault(actorcluster.GrainContext) {}

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
	sp, f, err := g.deps.DB.LoadPrescription(ctx, g.id, g.owner)
	if err != nil {
		return err
	}
	g.loaded, g.stored, g.fence = true, sp, f
	return nil
}

// drop forgets everything and stops the activation: after a fenced or
// failed write, memory may disagree with the database.
func (g *Grain) drop(ctx actorcluster.GrainContext) {
	g.loaded, g.stored, g.fence, g.dataKey = false, nil, persistence.Fence{}, nil
	ctx.Poison(ctx.Self())
}

func (g *Grain) storeError(ctx actorcluster.GrainContext, op string, err error) error {
	g.drop(ctx)
	if errors.Is(err, persistence.ErrFenced) {
		return messages.ErrFenced("prescription %s moved to another activation", g.id)
	}
	g.deps.Logger.Error("prescription store failed", "op", op, "prescription", g.id, "error", err)
	return messages.ErrStoreUnavailable("prescription store unavailable")
}

func (g *Grain) patientID() string {
	if g.stored == nil {
		return ""
	}
	return g.stored.Record.PatientId
}

// record makes one audit event durable, or fails the access.
func (g *Grain) record(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, outcome messages.AuditOutcome, detail string) error {
	return g.recordFor(ctx, c, action, g.patientID(), outcome, detail)
}

// recordFor audits an access to patient's record (before the prescription
// is stored, the patient the request names).
func (g *Grain) recordFor(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, patient string, outcome messages.AuditOutcome, detail string) error {
	e := audit.Event(c, action, "prescription", g.id, patient, outcome, detail, g.deps.Now())
	if err := g.deps.Audit.Access(e); err != nil {
		g.deps.Logger.Error("audit failed: access refused", "prescription", g.id, "action", action)
		return err
	}
	return nil
}

func (g *Grain) refuse(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, reply *actorcluster.GrainErrorResponse) error {
	if err := g.record(ctx, c, action, audit.OutcomeOf(reply), reply.Reason); err != nil {
		return err
	}
	return reply
}

// existing loads the prescription for a request on it, after the role
// gate: not found is audited (probing ids is worth knowing about) and
// passivates.
func (g *Grain) existing(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, gate string) error {
	if d := access.PrescriptionGate(c, gate); !d.Allowed {
		return g.refuse(ctx, c, action, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return g.storeError(ctx, "load", err)
	}
	if g.stored != nil && g.erased() {
		// The patient was erased while this activation held the
		// prescription: it forgets it, as the database did.
		g.drop(ctx)
		return messages.ErrNotFound("no prescription %s", g.id)
	}
	if g.stored == nil {
		cluster.PassivateSoon(ctx)
		return g.refuse(ctx, c, action, messages.ErrNotFound("no prescription %s", g.id))
	}
	return g.expireIfDue(ctx)
}

// erased reports whether the prescription's row is gone with its patient
// (an erasure deletes it behind this grain): asked on every request, as an
// erasure tells no prescription grain. A store error counts as not erased;
// the request's own reads fail on it.
func (g *Grain) erased() bool {
	ctx, cancel := g.storeCtx()
	defer cancel()
	gone, err := g.deps.DB.PrescriptionGone(ctx, g.id)
	return err == nil && gone
}

// treats reports whether the caller is a doctor who treats the patient
// now. It is asked every time, not cached: this grain does not hear of
// the patient's appointment changes, and a cancellation must end the
// doctor's access at once (the patient's grain caches, and follows them).
func (g *Grain) treats(c *messages.Caller) (bool, error) {
	if c.GetRole() != messages.Role_ROLE_DOCTOR || !validate.ID(c.GetSubject()) {
		return false, nil
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	now := g.deps.Now()
	until, err := g.deps.DB.DoctorTreats(ctx, c.GetSubject(), g.patientID(), now, g.deps.CareWindow)
	return now.Before(until), err
}

// reads reports whether the caller may read the prescription as a doctor:
// one who treats the patient, or who broke the glass for them and whose
// emergency access has not lapsed (reading only, like the patient's grain).
func (g *Grain) reads(c *messages.Caller) (bool, error) {
	treats, err := g.treats(c)
	if err != nil || treats || c.GetRole() != messages.Role_ROLE_DOCTOR || !validate.ID(c.GetSubject()) {
		return treats, err
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	now := g.deps.Now()
	until, err := g.deps.DB.EmergencyUntil(ctx, c.GetSubject(), g.patientID(), now)
	return now.Before(until), err
}

// key is the patient's data key, read once per activation: every read of
// the prescription opens its notes with it.
func (g *Grain) key() (*seal.Key, error) {
	if g.dataKey != nil {
		return g.dataKey, nil
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	k, err := g.deps.DB.DataKey(ctx, g.deps.Master, g.patientID())
	if err != nil {
		return nil, err
	}
	g.dataKey = k
	return k, nil
}

// changed is the stored row with next as its record: for changes that
// touch no clinical text, the sealed columns stay as they are.
func (g *Grain) changed(next *messages.PrescriptionRecord) persistence.StoredPrescription {
	sp := *g.stored
	sp.Record = next
	return sp
}

// update stores sp (decided on the current version) with an optional new
// dispense made with key, then makes it the state. A change someone asked
// for carries its audit event (by, action), written in the same
// transaction and then chained; the expiry is no one's access (by nil).
func (g *Grain) update(ctx actorcluster.GrainContext, op string, sp persistence.StoredPrescription, d *messages.Dispense, key string,
	by *messages.Caller, action messages.AuditAction) error {
	sctx, cancel := g.storeCtx()
	defer cancel()
	wctx := sctx
	if by != nil {
		e := audit.Event(by, action, "prescription", g.id, g.patientID(), messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", g.deps.Now())
		wctx = g.deps.Audit.InWrite(sctx, e)
	}
	if err := g.deps.DB.UpdatePrescription(wctx, g.fence, sp, g.stored.Record.Version, d, key); err != nil {
		return g.storeError(ctx, op, err)
	}
	if by != nil {
		g.deps.Audit.Drain(g.deps.Logger)
	}
	if key != "" {
		keys := map[string]int32{key: d.Number}
		for k, n := range g.stored.DispenseKeys {
			keys[k] = n
		}
		sp.DispenseKeys = keys
	}
	g.stored = &sp
	return nil
}

// expireIfDue ends the prescription when its duration is over, whoever
// asks first: a request on it or the expiry sweep.
func (g *Grain) expireIfDue(ctx actorcluster.GrainContext) error {
	next, ok := Expire(g.stored.Record, g.deps.Now())
	if !ok {
		return nil
	}
	return g.update(ctx, "expire", g.changed(next), nil, "", nil, messages.AuditAction_AUDIT_ACTION_UNSPECIFIED)
}

// view is the prescription with its clinical text opened.
func (g *Grain) view(ctx actorcluster.GrainContext) (*messages.PrescriptionRecord, error) {
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	p, err := Open(k, *g.stored)
	if err != nil {
		return nil, g.storeError(ctx, "open", err)
	}
	return p, nil
}

// Create asks the patient's grain to check and store the prescription,
// then serves it. The grain's identity is derived from the caller and the
// Idempotency-Key when there is one, so a replay reaches this grain again
// and is answered from the stored prescription.
func (g *Grain) Create(req *messages.CreatePrescriptionRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_CREATE_PRESCRIPTION
	fp := Fingerprint(req.GetPrescription(), req.GetOverrideReason())
	if d := access.PrescriptionGate(c, access.PrescriptionCreate); !d.Allowed {
		// An attempt on the patient the request names: their trail shows it.
		cluster.PassivateSoon(ctx)
		patient := req.GetPrescription().GetPatientId()
		if !validate.ID(patient) {
			patient = ""
		}
		if err := g.recordFor(ctx, c, action, patient, messages.AuditOutcome_AUDIT_OUTCOME_DENIED, d.Reason); err != nil {
			return nil, err
		}
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.stored != nil {
		return g.created(ctx, req, fp, true)
	}
	patient := req.GetPrescription().GetPatientId()
	if !validate.ID(patient) {
		cluster.PassivateSoon(ctx)
		return nil, g.refuse(ctx, c, action, messages.ErrInvalidArgument("the request is not valid").
			WithMetadata(map[string]string{"field:patient_id": "must be a patient id (UUID)"}))
	}
	in := proto.Clone(req.GetPrescription()).(*messages.PrescriptionRecord)
	in.Id = g.id
	admit := &messages.AdmitPrescriptionRequest{Caller: c, Prescription: in, OverrideReason: req.GetOverrideReason(),
		Fingerprint: fp, IdempotencyKey: req.GetIdempotencyKey()}
	cctx, cancel := context.WithTimeout(context.Background(), max(g.deps.GrainTimeout, cluster.DefaultTimeout))
	defer cancel()
	cl := ctx.Cluster()
	// The patient's grain decides access, checks, stores and audits; its
	// refusals are this reply.
	_, err := cluster.Call(cctx, cl, "Patient", patient, func() (*messages.PrescriptionReply, error) {
		return messages.GetPatientGrainClient(cl, patient).AdmitPrescription(admit, cluster.CallOptions(g.deps.GrainTimeout)...)
	})
	var ge *actorcluster.GrainErrorResponse
	switch {
	case errors.As(err, &ge) && ge.Reason == messages.ErrorReason_ALREADY_EXISTS.String():
		// An earlier attempt of this very request was admitted and its reply
		// lost: answer from the stored prescription.
	case err != nil:
		ctx.Poison(ctx.Self())
		return nil, err
	}
	g.loaded = false
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.stored == nil {
		cluster.PassivateSoon(ctx)
		return nil, messages.ErrStoreUnavailable("prescription %s was admitted but is not stored", g.id)
	}
	return g.created(ctx, req, fp, false)
}

// created answers a create for a prescription that is stored: the replay
// of the same idempotent request gets the stored prescription.
func (g *Grain) created(ctx actorcluster.GrainContext, req *messages.CreatePrescriptionRequest, fp []byte, replayed bool) (*messages.PrescriptionReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_CREATE_PRESCRIPTION
	if replayed {
		switch {
		case req.GetIdempotencyKey() == "" || c.GetSubject() != g.stored.Record.PrescriberId:
			return nil, g.refuse(ctx, c, action, messages.ErrAlreadyExists("prescription %s already exists", g.id).
				WithMetadata(map[string]string{"id": g.id}))
		case !bytes.Equal(g.stored.Fingerprint, fp):
			return nil, g.refuse(ctx, c, action, messages.ErrIdempotencyKeyReused("the idempotency key was used for a different prescription"))
		}
		if err := g.record(ctx, c, action, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
			return nil, err
		}
	}
	if err := g.expireIfDue(ctx); err != nil {
		return nil, err
	}
	p, err := g.view(ctx)
	if err != nil {
		return nil, err
	}
	return &messages.PrescriptionReply{Prescription: p, Replayed: replayed}, nil
}

func (g *Grain) Get(req *messages.GetPrescriptionRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_PRESCRIPTION
	if err := g.existing(ctx, c, action, access.PrescriptionRead); err != nil {
		return nil, err
	}
	treats, err := g.reads(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	if d := access.ReadPrescription(c, g.patientID(), treats); !d.Allowed {
		return nil, g.refuse(ctx, c, action, messages.ErrPermissionDenied("%s", d.Reason))
	}
	p, err := g.view(ctx)
	if err != nil {
		return nil, err
	}
	if err := g.record(ctx, c, action, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return &messages.PrescriptionReply{Prescription: p}, nil
}

// Dispense records a fill; with an idempotency key a retried dispense
// counts once.
func (g *Grain) Dispense(req *messages.DispenseRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_DISPENSE_PRESCRIPTION
	if err := g.existing(ctx, c, action, access.PrescriptionDispense); err != nil {
		return nil, err
	}
	treats, err := g.treats(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	if d := access.DispensePrescription(c, treats); !d.Allowed {
		return nil, g.refuse(ctx, c, action, messages.ErrPermissionDenied("%s", d.Reason))
	}
	replayed := false
	if _, ok := g.stored.DispenseKeys[req.GetIdempotencyKey()]; ok && req.GetIdempotencyKey() != "" {
		replayed = true
	} else {
		next, d, err := Dispense(g.stored.Record, c.GetSubject(), req.GetQuantity(), g.deps.Now())
		if err != nil {
			return nil, g.refuse(ctx, c, action, stateReply(err))
		}
		if err := g.update(ctx, "dispense", g.changed(next), d, req.GetIdempotencyKey(), c, action); err != nil {
			return nil, err
		}
	}
	p, err := g.view(ctx)
	if err != nil {
		return nil, err
	}
	if replayed {
		if err := g.record(ctx, c, action, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
			return nil, err
		}
	}
	return &messages.PrescriptionReply{Prescription: p, Replayed: replayed}, nil
}

// Cancel ends the prescription: a doctor who treats the patient, with a
// reason (clinical text, stored sealed).
func (g *Grain) Cancel(req *messages.CancelPrescriptionRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_CANCEL_PRESCRIPTION
	if err := g.existing(ctx, c, action, access.PrescriptionCancel); err != nil {
		return nil, err
	}
	treats, err := g.treats(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	if d := access.RecordClinical(c, treats); !d.Allowed {
		return nil, g.refuse(ctx, c, action, messages.ErrPermissionDenied("%s", d.Reason))
	}
	current, err := g.view(ctx)
	if err != nil {
		return nil, err
	}
	next, err := Cancel(current, c.GetSubject(), req.GetReason(), g.deps.Now())
	if err != nil {
		return nil, g.refuse(ctx, c, action, stateReply(err))
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	if err := g.update(ctx, "cancel", Seal(k, next, g.stored.Fingerprint), nil, "", c, action); err != nil {
		return nil, err
	}
	return &messages.PrescriptionReply{Prescription: next}, nil
}

// Expire is the sweep's nudge: it expires the prescription if it is due
// and answers nothing about it. Not an access to the record: not audited.
func (g *Grain) Expire(_ *messages.ExpirePrescriptionRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionReply, error) {
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.stored == nil {
		cluster.PassivateSoon(ctx)
		return nil, messages.ErrNotFound("no prescription %s", g.id)
	}
	if err := g.expireIfDue(ctx); err != nil {
		return nil, err
	}
	return &messages.PrescriptionReply{}, nil
}

// stateReply maps a lifecycle refusal to its reply.
func stateReply(err error) *actorcluster.GrainErrorResponse {
	if IsStateError(err) {
		return messages.ErrWrongState("%s", err.Error())
	}
	return validate.Reply(err)
}
