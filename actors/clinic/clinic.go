// Package clinic is the clinic grain: one per clinic, holding its name,
// address and time zone. Admins create clinics; everyone signed in reads them.
package clinic

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
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
	sc, _, err := g.deps.DB.LoadClinic(sctx, g.id, g.owner)
	if err != nil {
		g.deps.Logger.Error("clinic load failed", "clinic", g.id, "error", err)
		ctx.Poison(ctx.Self())
		return messages.ErrStoreUnavailable("clinic store unavailable")
	}
	g.loaded = true
	if sc != nil {
		g.rec, g.fingerprint = sc.Record, sc.Fingerprint
	}
	return nil
}

func (g *Grain) record(ctx actorcluster.GrainContext, c *messages.Caller, outcome messages.AuditOutcome, detail string) error {
	return g.deps.Audit.Access(ctx, g.id, audit.Event(c, "create", "clinic", g.id, "", outcome, detail, g.deps.Now()))
}

func (g *Grain) refuse(ctx actorcluster.GrainContext, c *messages.Caller, reply *actorcluster.GrainErrorResponse) error {
	if err := g.record(ctx, c, audit.OutcomeOf(reply), reply.Reason); err != nil {
		return err
	}
	return reply
}

func (g *Grain) Create(req *messages.CreateClinicRequest, ctx actorcluster.GrainContext) (*messages.ClinicReply, error) {
	c := req.GetCaller()
	if d := access.ManageDirectory(c); !d.Allowed {
		return nil, g.refuse(ctx, c, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	fp := calendar.Fingerprint(req.GetClinic())
	if g.rec != nil {
		if req.IdempotencyKey == "" || !bytes.Equal(g.fingerprint, fp) {
			return nil, g.refuse(ctx, c, messages.ErrAlreadyExists("clinic %s already exists", g.id).WithMetadata(map[string]string{"id": g.id}))
		}
		if err := g.record(ctx, c, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
			return nil, err
		}
		return &messages.ClinicReply{Clinic: g.rec, Replayed: true}, nil
	}
	rec, err := New(g.id, req.GetClinic(), g.deps.Now())
	if err != nil {
		cluster.PassivateSoon(ctx)
		return nil, g.refuse(ctx, c, validate.Reply(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = g.deps.DB.CreateClinic(sctx, g.owner, rec, fp, &messages.ClinicCreated{Caller: c, Clinic: rec})
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
	g.rec, g.fingerprint = rec, fp
	if err := g.record(ctx, c, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
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
