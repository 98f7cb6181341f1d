package patient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/caregrid/caregrid/internal/tracing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/proof"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/interactions"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Access-log page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Deps are what every patient grain of a process shares.
type Deps struct {
	// Proof proves the caller of every request before the grain sees it
	// (actors/proof); nil refuses every request.
	Proof  *proof.Checker
	DB     *persistence.DB
	Audit  audit.Recorder
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// StoreTimeout bounds one database call.
	StoreTimeout time.Duration
	// Master wraps the patients' data keys (nil: clinical records refused).
	Master *seal.Key
	// Interactions checks new prescriptions; nil is the bundled
	// high-priority table.
	Interactions interactions.Checker
	// CareWindow is how long around an appointment it lets its doctor
	// read the record (zero: persistence.DefaultCareWindow).
	CareWindow persistence.CareWindow
	// Retention is how long each kind of record is kept (zero:
	// persistence.DefaultRetention).
	Retention persistence.Retention
	// ExportExpiry is how long an export's download link works (zero:
	// DefaultExportExpiry).
	ExportExpiry time.Duration
	// Blobs is the document store, for deleting the blobs of erased or
	// expired documents (nil: left for the store's own lifecycle rules).
	Blobs blob.Store
	// NotifyLanguage is the language of patients who have not chosen one
	// (default ro).
	NotifyLanguage string
}

// Kind registers the patient grain kind; an activation idle for idle
// passivates (its state is durable and reloads on the next request).
// proto.actor keeps the factory in a package variable: one deps per process.
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
	if deps.Retention == (persistence.Retention{}) {
		deps.Retention = persistence.DefaultRetention
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Interactions == nil {
		deps.Interactions = interactions.HighPriority()
	}
	return messages.NewPatientKind(func() messages.Patient { return &Grain{deps: deps} }, idle, actor.WithReceiverMiddleware(deps.Proof.Middleware(proof.Policy{Service: "Patient", MemberOnly: []string{"Reserve", "Settle", "AdmitPrescription", "Erase", "ApplyRetention"}})))
}

// Grain is one patient. Every method follows the same steps: decide access
// (package access, pure), load the record once per activation, decide the
// change (record.go, pure), write it through the fence, change memory only
// after the commit, record the access durably, reply.
type Grain struct {
	// self names this activation for its request's trace (tracing.Background).
	self  string
	deps  Deps
	id    string
	owner string

	loaded      bool
	rec         *messages.PatientRecord // nil: no such patient (yet)
	fingerprint []byte
	fence       persistence.Fence
	// reservations: loaded on the first booking (appointments_grain.go).
	reservations *Reservations
	// treating: doctors known to treat this patient, each until the grant
	// lapses. Settle (any change of one of the patient's appointments) and
	// a care-team removal forget it at once.
	treating access.Treating
	// dataKey seals this patient's clinical text; loaded on first use.
	dataKey *seal.Key
}

func (g *Grain) Init(ctx actorcluster.GrainContext) {
	g.self = ctx.Self().String()
	g.id = ctx.Identity()
	g.owner = ctx.Cluster().ActorSystem.Address()
}

func (g *Grain) Terminate(actorcluster.GrainContext)      {}
func (g *Grain) ReceiveDefault(actorcluster.GrainContext) {}

func (g *Grain) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(tracing.Background(g.self), g.deps.StoreTimeout)
}

// load reads the record once per activation, claiming the grain when the
// patient exists (persistence.LoadPatient).
func (g *Grain) load() error {
	if g.loaded {
		return nil
	}
	if !validate.ID(g.id) {
		g.loaded = true // never a patient: ids are UUIDs
		return nil
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	sp, f, err := g.deps.DB.LoadPatient(ctx, g.id, g.owner)
	if err != nil {
		return err
	}
	if sp != nil && sp.ClinicalSealed != nil {
		// Blood type and allergies are sealed with the patient's data key.
		k, err := g.deps.DB.DataKey(ctx, g.deps.Master, g.id)
		if err != nil {
			return err
		}
		if err := persistence.OpenClinical(k, sp); err != nil {
			return err
		}
		g.dataKey = k
	}
	g.loaded, g.fence = true, f
	if sp != nil {
		g.rec, g.fingerprint = sp.Record, sp.Fingerprint
	}
	return nil
}

// drop forgets everything and stops the activation: after a fenced or
// failed write, memory may disagree with the database.
func (g *Grain) drop(ctx actorcluster.GrainContext) {
	g.loaded, g.rec, g.fingerprint, g.fence, g.reservations, g.treating, g.dataKey = false, nil, nil, persistence.Fence{}, nil, access.Treating{}, nil
	ctx.Poison(ctx.Self())
}

// storeError turns a persistence error into the reply, dropping state when
// the write's outcome is unknown or another activation owns the patient.
func (g *Grain) storeError(ctx actorcluster.GrainContext, op string, err error) error {
	g.drop(ctx)
	if errors.Is(err, persistence.ErrFenced) {
		return messages.ErrFenced("patient %s moved to another activation", g.id)
	}
	g.deps.Logger.Error("patient store failed", "op", op, "patient", g.id, "error", err)
	return messages.ErrStoreUnavailable("patient store unavailable")
}

// treats reports whether the caller is a doctor who treats this patient
// now (persistence.DoctorTreats says what grants it). Only doctors are
// looked up.
func (g *Grain) treats(c *messages.Caller) (bool, error) {
	if c.GetRole() != messages.Role_ROLE_DOCTOR || c.GetSubject() == "" {
		return false, nil
	}
	now := g.deps.Now()
	if g.treating.Known(c.GetSubject(), now) {
		return true, nil
	}
	if !validate.ID(g.id) || !validate.ID(c.GetSubject()) {
		return false, nil
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	until, err := g.deps.DB.DoctorTreats(ctx, c.GetSubject(), g.id, now, g.deps.CareWindow)
	if err != nil {
		return false, err
	}
	g.treating.Remember(c.GetSubject(), until, now)
	return now.Before(until), nil
}

// reads reports whether the caller is a doctor who may read the record
// now: one who treats the patient, or one with a live emergency access
// (break the glass), which lets them read past any restriction but write
// nothing. Only doctors without a relationship pay the second look-up.
func (g *Grain) reads(c *messages.Caller) (bool, error) {
	treats, err := g.treats(c)
	if err != nil || treats || c.GetRole() != messages.Role_ROLE_DOCTOR || !validate.ID(c.GetSubject()) || !validate.ID(g.id) {
		return treats, err
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	now := g.deps.Now()
	until, err := g.deps.DB.EmergencyUntil(ctx, c.GetSubject(), g.id, now)
	return now.Before(until), err
}

// viewOf is the record as view allows: without clinical fields for
// demographics. The second result says whether anything was withheld.
func viewOf(rec *messages.PatientRecord, view access.PatientView) (*messages.PatientRecord, bool) {
	if view == access.ViewFull || rec == nil {
		return rec, false
	}
	out := proto.Clone(rec).(*messages.PatientRecord)
	out.BloodType, out.Allergies = messages.BloodType_BLOOD_TYPE_UNSPECIFIED, nil
	return out, true
}

// reply answers with the record as the caller may see it.
func reply(rec *messages.PatientRecord, view access.PatientView, replayed bool) *messages.PatientReply {
	shown, withheld := viewOf(rec, view)
	return &messages.PatientReply{Patient: shown, Replayed: replayed, ClinicalWithheld: withheld}
}

// record makes one audit event about this patient durable. If it cannot,
// the access fails: nothing is served unaudited.
func (g *Grain) record(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, patientID string, outcome messages.AuditOutcome, detail string) error {
	e := audit.Event(c, action, "patient", g.id, patientID, outcome, detail, g.deps.Now())
	if err := g.deps.Audit.Access(e); err != nil {
		g.deps.Logger.Error("audit failed: access refused", "patient", g.id, "action", action)
		return err
	}
	return nil
}

// written returns ctx for a write of this record whose audit event (action,
// by c, a success) is written in the write's own transaction
// (audit.Recorder.InWrite): hand it to that one write only. Once the write
// has committed, chained asks the shard to chain the event; the write is
// answered whatever the audit chain does.
func (g *Grain) written(ctx context.Context, c *messages.Caller, action messages.AuditAction, detail string) context.Context {
	return g.deps.Audit.InWrite(ctx, audit.Event(c, action, "patient", g.id, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, detail, g.deps.Now()))
}

// chained: see written.
func (g *Grain) chained(ctx actorcluster.GrainContext) { g.deps.Audit.Drain(g.deps.Logger) }

// refuse audits a refused or failed access and returns reply, unless the
// audit itself fails.
func (g *Grain) refuse(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, patientID string, reply *actorcluster.GrainErrorResponse) error {
	if err := g.record(ctx, c, action, patientID, audit.OutcomeOf(reply), reply.Reason); err != nil {
		return err
	}
	return reply
}

func (g *Grain) Register(req *messages.RegisterPatientRequest, ctx actorcluster.GrainContext) (*messages.PatientReply, error) {
	c := req.GetCaller()
	withClinical := req.GetPatient().GetBloodType() != messages.BloodType_BLOOD_TYPE_UNSPECIFIED || len(req.GetPatient().GetAllergies()) > 0
	if d := access.RegisterPatient(c, withClinical); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec != nil {
		return g.registered(ctx, req)
	}
	if !validate.ID(g.id) {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, "", messages.ErrInvalidArgument("patient id %q is not a UUID", g.id))
	}
	rec, err := NewRecord(g.id, req.GetPatient(), g.deps.Now())
	if err != nil {
		cluster.PassivateSoon(ctx) // nothing registered: do not keep an empty activation
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, g.id, validate.Reply(err))
	}
	var fp []byte
	if req.IdempotencyKey != "" {
		fp = Fingerprint(req.GetPatient())
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	f, key, err := g.deps.DB.RegisterPatient(g.written(sctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, ""), g.owner, g.deps.Master, rec, fp,
		&messages.PatientRegistered{Caller: c, Patient: rec})
	var taken *persistence.IDNPTakenError
	switch {
	case errors.As(err, &taken):
		cluster.PassivateSoon(ctx)
		reply := messages.ErrAlreadyExists("a patient with this IDNP is already registered").
			WithMetadata(map[string]string{"id": taken.ExistingID})
		// The reply names the existing patient: audit it as an access to them.
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, taken.ExistingID, reply)
	case errors.Is(err, persistence.ErrPatientExists):
		// Another activation registered this id first; answer from its record.
		g.loaded = false
		if err := g.load(); err != nil {
			return nil, g.storeError(ctx, "load", err)
		}
		return g.registered(ctx, req)
	case err != nil:
		return nil, g.storeError(ctx, "register", err)
	}
	g.rec, g.fingerprint, g.fence, g.dataKey = rec, fp, f, key
	g.chained(ctx)
	return reply(rec, registrarView(c), false), nil
}

// registered answers a registration for a patient that exists: the replay
// of the same idempotent request gets the first reply.
func (g *Grain) registered(ctx actorcluster.GrainContext, req *messages.RegisterPatientRequest) (*messages.PatientReply, error) {
	c := req.GetCaller()
	if req.IdempotencyKey == "" {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, g.id, messages.ErrAlreadyExists("patient %s already exists", g.id).
			WithMetadata(map[string]string{"id": g.id}))
	}
	if len(g.fingerprint) == 0 || !bytes.Equal(g.fingerprint, Fingerprint(req.GetPatient())) {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, g.id, messages.ErrIdempotencyKeyReused("the idempotency key was used for a different registration"))
	}
	if err := g.record(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
		return nil, err
	}
	return reply(g.rec, registrarView(c), true), nil
}

// registrarView is what the registering caller sees of the record: a doctor
// the whole of it, others its demographics.
func registrarView(c *messages.Caller) access.PatientView {
	if c.GetRole() == messages.Role_ROLE_DOCTOR {
		return access.ViewFull
	}
	return access.ViewDemographics
}

func (g *Grain) Get(req *messages.GetPatientRequest, ctx actorcluster.GrainContext) (*messages.PatientReply, error) {
	c := req.GetCaller()
	treats, err := g.reads(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	view, d := access.ReadPatient(c, g.id, treats)
	if !d.Allowed && c.GetRole() == messages.Role_ROLE_DOCTOR && validate.ID(c.GetSubject()) && validate.ID(g.id) {
		// A doctor the patient limited to demographics sees what the desk sees.
		sctx, cancel := g.storeCtx()
		limited, err := g.deps.DB.DoctorLimited(sctx, c.GetSubject(), g.id, g.deps.Now(), g.deps.CareWindow)
		cancel()
		if err != nil {
			return nil, g.storeError(ctx, "relationship", err)
		}
		if limited {
			view, d = access.ReadPatientLimited(c)
		}
	}
	if !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_READ, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, messages.AuditAction_AUDIT_ACTION_READ)
	}
	if err := g.record(ctx, c, messages.AuditAction_AUDIT_ACTION_READ, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply(g.rec, view, false), nil
}

// notFound audits the attempt (probing for ids is worth knowing about) and
// passivates the empty activation.
func (g *Grain) notFound(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction) error {
	ctx.Poison(ctx.Self())
	return g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no patient %s", g.id))
}

func (g *Grain) Update(req *messages.UpdatePatientRequest, ctx actorcluster.GrainContext) (*messages.PatientReply, error) {
	c := req.GetCaller()
	treats, err := g.treats(c)
	if err != nil {
		return nil, g.storeError(ctx, "relationship", err)
	}
	if d := access.UpdatePatient(c, g.id, req.GetUpdateMask().GetPaths(), treats); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE)
	}
	if req.ExpectedVersion > g.rec.Version {
		// Versions only grow. If the database has the caller's version, this
		// is a stale duplicate activation: step aside, and the retry reaches
		// one that loads the current record. If not, the caller's version
		// is one that never existed: an ordinary mismatch, and no reason to
		// re-activate (each re-activation bumps the fence epoch).
		sctx, cancel := g.storeCtx()
		stored, err := g.deps.DB.StoredVersion(sctx, "patients", g.id)
		cancel()
		if err != nil {
			return nil, g.storeError(ctx, "version", err)
		}
		if stored > g.rec.Version {
			g.drop(ctx)
			return nil, messages.ErrFenced("patient %s: this activation is behind", g.id)
		}
	}
	next, changed, err := ApplyUpdate(g.rec, req, g.deps.Now())
	var stale errVersion
	switch {
	case errors.As(err, &stale):
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, g.id, messages.ErrVersionMismatch("%s", stale.Error()).
			WithMetadata(map[string]string{"version": strconv.FormatInt(g.rec.Version, 10)}))
	case err != nil:
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, g.id, validate.Reply(err))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	event := &messages.PatientUpdated{Caller: c, Patient: next, ChangedFields: changed}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	if err := g.deps.DB.UpdatePatient(g.written(sctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, ""), g.fence, k, g.rec, next, event); err != nil {
		return nil, g.storeError(ctx, "update", err)
	}
	g.rec = next
	g.chained(ctx)
	view, _ := access.ReadPatient(c, g.id, treats)
	return reply(next, view, false), nil
}

func (g *Grain) AccessLog(req *messages.AccessLogRequest, ctx actorcluster.GrainContext) (*messages.AccessLogReply, error) {
	c := req.GetCaller()
	if d := access.ReadAccessLog(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_ACCESS_LOG, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_ACCESS_LOG)
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = DefaultPageSize
	}
	if limit < 1 || limit > MaxPageSize {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_ACCESS_LOG, g.id, messages.ErrInvalidArgument("limit must be 1 to %d", MaxPageSize).
			WithMetadata(map[string]string{"field:limit": "must be 1 to 500"}))
	}
	after, err := decodeCursor(req.Cursor)
	if err != nil {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_ACCESS_LOG, g.id, messages.ErrInvalidArgument("bad cursor").
			WithMetadata(map[string]string{"field:cursor": "is not a cursor this API returned"}))
	}
	w := persistence.AuditWindow{Before: after}
	if req.GetFrom() != nil {
		w.From = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		w.To = req.GetTo().AsTime()
	}
	if !w.To.IsZero() && !w.From.Before(w.To) {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_ACCESS_LOG, g.id, messages.ErrInvalidArgument("from must be before to").
			WithMetadata(map[string]string{"field:to": "must be after from"}))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.PatientAuditEvents(sctx, g.id, w, limit+1)
	if err != nil {
		g.deps.Logger.Error("access log read failed", "patient", g.id, "error", err)
		return nil, messages.ErrStoreUnavailable("audit store unavailable")
	}
	reply := &messages.AccessLogReply{}
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[len(rows)-1]
		reply.NextCursor = encodeCursor(persistence.AuditCursor{OccurredAt: last.OccurredAt, Shard: last.Shard, Seq: last.Seq})
	}
	for _, r := range rows {
		reply.Events = append(reply.Events, eventOf(r))
	}
	if err := g.emergencyReasons(reply.Events); err != nil {
		return nil, g.storeError(ctx, "emergency reasons", err)
	}
	if err := g.record(ctx, c, messages.AuditAction_AUDIT_ACTION_READ_ACCESS_LOG, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}

// emergencyReasons shows each emergency grant in the log with its reason,
// which the audit row leaves out (it names the grant) and the grant keeps
// sealed.
func (g *Grain) emergencyReasons(evs []*messages.AuditEvent) error {
	for _, ev := range evs {
		id := emergencyGrantOf(ev.GetDetail())
		if ev.GetAction() != "emergency-access" || id == "" {
			continue
		}
		k, err := g.key()
		if err != nil {
			return err
		}
		ctx, cancel := g.storeCtx()
		e, err := g.deps.DB.EmergencyAccessByID(ctx, id)
		cancel()
		if errors.Is(err, persistence.ErrNotFound) || err == nil && e.PatientID != g.id {
			continue
		}
		if err != nil {
			return err
		}
		if ev.Caller.BreakGlassReason, err = OpenEmergencyReason(k, e); err != nil {
			return err
		}
	}
	return nil
}

func eventOf(r persistence.AuditRow) *messages.AuditEvent {
	role, _ := messages.ParseRole(r.Role)
	outcome, _ := messages.ParseAuditOutcome(r.Outcome)
	return &messages.AuditEvent{
		OccurredAt: timestamppb.New(r.OccurredAt),
		Caller: &messages.Caller{Subject: r.Subject, Role: role, Client: r.Client, PurposeOfUse: r.PurposeOfUse,
			RequestId: r.RequestID, SourceAddress: r.SourceAddress, BreakGlassReason: r.BreakGlassReason,
			ClientRequestId: r.ClientRequestID},
		Action: r.Action, ResourceType: r.ResourceType, ResourceId: r.ResourceID, PatientId: r.PatientID,
		Outcome: outcome, Detail: r.Detail, Shard: r.Shard, Seq: r.Seq,
	}
}

type cursorJSON struct {
	T int64 `json:"t"`
	S int32 `json:"s"`
	Q int64 `json:"q"`
}

func encodeCursor(c persistence.AuditCursor) string {
	b, _ := json.Marshal(cursorJSON{T: c.OccurredAt.UnixMicro(), S: c.Shard, Q: c.Seq})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*persistence.AuditCursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var c cursorJSON
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &persistence.AuditCursor{OccurredAt: time.UnixMicro(c.T).UTC(), Shard: c.S, Seq: c.Q}, nil
}
