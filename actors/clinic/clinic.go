// Package clinic is the clinic grain: one per clinic, holding its name,
// address and time zone. Admins create clinics; everyone signed in reads them.
package clinic

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/proof"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits on a clinic.
const (
	MaxNameRunes    = 200
	MaxAddressRunes = 500
)

// New validates a new clinic and returns the record to store.
func New(id string, in *messages.ClinicRecord, now time.Time) (*messages.ClinicRecord, error) {
	if in == nil {
		return nil, validate.Errors{{Field: "clinic", Message: "is required"}}
	}
	c := proto.Clone(in).(*messages.ClinicRecord)
	c.Name, c.Address, c.TimeZone = strings.TrimSpace(c.Name), strings.TrimSpace(c.Address), strings.TrimSpace(c.TimeZone)
	var errs validate.Errors
	errs.Text("name", c.Name, MaxNameRunes, true)
	errs.Text("address", c.Address, MaxAddressRunes, true)
	errs.Zone("time_zone", c.TimeZone)
	if !validate.ID(id) {
		errs.Add("id", "must be a UUID")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	c.Id, c.Version = id, 1
	ts := timestamppb.New(now.UTC().Truncate(time.Microsecond))
	c.CreatedAt, c.UpdatedAt = ts, ts
	return c, nil
}

// Deps are what every clinic grain of a process shares.
type Deps struct {
	// Proof proves the caller of every request before the grain sees it
	// (actors/proof); nil refuses every request.
	Proof  *proof.Checker
	DB     *persistence.DB
	Audit  audit.Recorder
	Logger *slog.Logger
	Now    func() time.Time
}

// Kind registers the clinic grain kind.
func Kind(deps Deps, idle time.Duration) *actorcluster.Kind {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return messages.NewClinicKind(func() messages.Clinic { return &Grain{deps: deps} }, idle, actor.WithReceiverMiddleware(deps.Proof.Middleware(proof.Policy{Service: "Clinic"})))
}

// Grain is one clinic.
type Grain struct {
	deps        Deps
	id, owner   string
	loaded      bool
	rec         *messages.ClinicRecord
	fingerprint []byte
	fence       persistence.Fence // this activation's claim, proven by every write
}

func (g *Grain) Init(ctx actorcluster.GrainContext) {
	g.id, g.owner = ctx.Identity(), ctx.Cluster().ActorSystem.Address()
}

func (g *Grain) Terminate(actorcluster.GrainContext)      {}
func (g *Grain) ReceiveDefault(actorcluster.GrainContext) {}

func (g *Grain) load(ctx actorcluster.GrainContext) error {
	if g.loaded {
		return nil
	}
	if !validate.ID(g.id) {
		g.loaded = true
		return nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sc, f, err := g.deps.DB.LoadClinic(sctx, g.id, g.owner)
	if err != nil {
		g.deps.Logger.Error("clinic load failed", "clinic", g.id, "error", err)
		ctx.Poison(ctx.Self())
		return messages.ErrStoreUnavailable("clinic store unavailable")
	}
	g.loaded = true
	if sc != nil {
		g.rec, g.fingerprint, g.fence = sc.Record, sc.Fingerprint, f
	}
	return nil
}

// written returns ctx for a write of this clinic whose audit event is
// written in the write's own transaction (audit.Recorder.InWrite).
func (g *Grain) written(ctx context.Context, c *messages.Caller, action messages.AuditAction, detail string) context.Context {
	return g.deps.Audit.InWrite(ctx, audit.Event(c, action, "clinic", g.id, "", messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, detail, g.deps.Now()))
}

func (g *Grain) record(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, outcome messages.AuditOutcome, detail string) error {
	return g.deps.Audit.Access(audit.Event(c, action, "clinic", g.id, "", outcome, detail, g.deps.Now()))
}

func (g *Grain) refuse(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, reply *actorcluster.GrainErrorResponse) error {
	if err := g.record(ctx, c, action, audit.OutcomeOf(reply), reply.Reason); err != nil {
		return err
	}
	return reply
}

func (g *Grain) Create(req *messages.CreateClinicRequest, ctx actorcluster.GrainContext) (*messages.ClinicReply, error) {
	c := req.GetCaller()
	if d := access.ManageDirectory(c); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	fp := calendar.Fingerprint(req.GetClinic())
	if g.rec != nil {
		if req.IdempotencyKey == "" || !bytes.Equal(g.fingerprint, fp) {
			return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, messages.ErrAlreadyExists("clinic %s already exists", g.id).WithMetadata(map[string]string{"id": g.id}))
		}
		if err := g.record(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
			return nil, err
		}
		return &messages.ClinicReply{Clinic: g.rec, Replayed: true}, nil
	}
	rec, err := New(g.id, req.GetClinic(), g.deps.Now())
	if err != nil {
		cluster.PassivateSoon(ctx)
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, validate.Reply(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	f, err := g.deps.DB.CreateClinic(g.written(sctx, c, messages.AuditAction_AUDIT_ACTION_CREATE, ""), g.owner, rec, fp, &messages.ClinicCreated{Caller: c, Clinic: rec})
	if errors.Is(err, persistence.ErrExists) {
		g.loaded = false
		if err := g.load(ctx); err != nil {
			return nil, err
		}
		return g.Create(req, ctx)
	}
	if err != nil {
		g.loaded = false
		ctx.Poison(ctx.Self())
		g.deps.Logger.Error("clinic create failed", "clinic", g.id, "error", err)
		return nil, messages.ErrStoreUnavailable("clinic store unavailable")
	}
	g.rec, g.fingerprint, g.fence = rec, fp, f
	g.deps.Audit.Drain(g.deps.Logger)
	return &messages.ClinicReply{Clinic: rec}, nil
}

func (g *Grain) Get(req *messages.GetClinicRequest, ctx actorcluster.GrainContext) (*messages.ClinicReply, error) {
	if d := access.ReadDirectory(req.GetCaller()); !d.Allowed {
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	if g.rec == nil {
		cluster.PassivateSoon(ctx)
		return nil, messages.ErrNotFound("no clinic %s", g.id)
	}
	return &messages.ClinicReply{Clinic: g.rec}, nil
}

// Updatable are the fields PATCH may change.
var Updatable = []string{"name", "address", "time_zone"}

// Update changes a clinic's name, address or time zone (admins), at the
// version the caller read (If-Match).
func (g *Grain) Update(req *messages.UpdateClinicRequest, ctx actorcluster.GrainContext) (*messages.ClinicReply, error) {
	c := req.GetCaller()
	if d := access.ManageDirectory(c); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	if g.rec == nil {
		cluster.PassivateSoon(ctx)
		return nil, messages.ErrNotFound("no clinic %s", g.id)
	}
	if req.ExpectedVersion > g.rec.Version {
		// Stale only if the database has the caller's version (see the
		// patient grain's Update); otherwise a plain mismatch.
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		stored, err := g.deps.DB.StoredVersion(sctx, "clinics", g.id)
		cancel()
		if err != nil {
			return nil, messages.ErrStoreUnavailable("clinic store unavailable")
		}
		if stored > g.rec.Version {
			ctx.Poison(ctx.Self())
			return nil, messages.ErrFenced("clinic %s: this activation is behind", g.id)
		}
	}
	if req.ExpectedVersion != 0 && req.ExpectedVersion != g.rec.Version {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, messages.ErrVersionMismatch("clinic is at version %d, not %d", g.rec.Version, req.ExpectedVersion).
			WithMetadata(map[string]string{"version": strconv.FormatInt(g.rec.Version, 10)}))
	}
	next, err := ApplyUpdate(g.rec, req.GetClinic(), req.GetUpdateMask().GetPaths(), g.deps.Now())
	if err != nil {
		return nil, g.refuse(ctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, validate.Reply(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	wctx := g.written(sctx, c, messages.AuditAction_AUDIT_ACTION_UPDATE, strings.Join(req.GetUpdateMask().GetPaths(), ","))
	err = g.deps.DB.UpdateClinic(wctx, g.fence, next, g.rec.Version, &messages.ClinicChanged{Caller: c, Clinic: next})
	if errors.Is(err, persistence.ErrFenced) {
		ctx.Poison(ctx.Self())
		return nil, messages.ErrFenced("clinic %s moved to another activation", g.id)
	}
	if err != nil {
		g.loaded = false
		ctx.Poison(ctx.Self())
		g.deps.Logger.Error("clinic update failed", "clinic", g.id, "error", err)
		return nil, messages.ErrStoreUnavailable("clinic store unavailable")
	}
	g.rec = next
	g.deps.Audit.Drain(g.deps.Logger)
	return &messages.ClinicReply{Clinic: next}, nil
}

// ApplyUpdate returns cur with the fields paths names taken from in, at
// the next version, or the validation errors.
func ApplyUpdate(cur, in *messages.ClinicRecord, paths []string, now time.Time) (*messages.ClinicRecord, error) {
	if in == nil {
		in = &messages.ClinicRecord{}
	}
	next := proto.Clone(cur).(*messages.ClinicRecord)
	var errs validate.Errors
	if len(paths) == 0 {
		errs.Add("update_mask", "names no field to change")
	}
	for _, p := range paths {
		switch p {
		case "name":
			next.Name = in.Name
		case "address":
			next.Address = in.Address
		case "time_zone":
			next.TimeZone = in.TimeZone
		default:
			errs.Add(p, "cannot be changed")
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	checked, err := New(cur.Id, next, now)
	if err != nil {
		return nil, err
	}
	checked.Version, checked.CreatedAt = cur.Version+1, cur.CreatedAt
	return checked, nil
}
