package patient

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// clinicalWrite is the access check and load every clinical write starts
// with: a doctor who treats the patient, and a patient that exists.
func (g *Grain) clinicalWrite(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction) error {
	treats, err := g.treats(c)
	if err != nil {
		return g.storeError(ctx, "relationship", err)
	}
	if d := access.RecordClinical(c, treats); !d.Allowed {
		return g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return g.notFound(ctx, c, action)
	}
	return nil
}

// clinicalRead is the access check, load and page size every clinical
// list starts with: the patient and doctors who treat them.
func (g *Grain) clinicalRead(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, limit int32, cursor string) (int, appointmentCursor, error) {
	return g.clinicalReadAs(ctx, c, action, limit, cursor, func(treats bool) access.Decision { return access.ReadClinical(c, g.id, treats) })
}

// clinicalReadAs is clinicalRead with its own access rule.
func (g *Grain) clinicalReadAs(ctx actorcluster.GrainContext, c *messages.Caller, action messages.AuditAction, limit int32, cursor string, decide func(treats bool) access.Decision) (int, appointmentCursor, error) {
	treats, err := g.reads(c)
	if err != nil {
		return 0, appointmentCursor{}, g.storeError(ctx, "relationship", err)
	}
	if d := decide(treats); !d.Allowed {
		return 0, appointmentCursor{}, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return 0, appointmentCursor{}, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return 0, appointmentCursor{}, g.notFound(ctx, c, action)
	}
	n := int(limit)
	if n == 0 {
		n = DefaultPageSize
	}
	if n < 1 || n > MaxPageSize {
		return 0, appointmentCursor{}, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("limit must be 1 to %d", MaxPageSize).
			WithMetadata(map[string]string{"field:limit": "must be 1 to 500"}))
	}
	after, err := decodeAppointmentCursor(cursor)
	if err != nil {
		return 0, appointmentCursor{}, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("bad cursor").
			WithMetadata(map[string]string{"field:cursor": "is not a cursor this API returned"}))
	}
	return n, after, nil
}

// RecordVaccination records a dose: a doctor who treats the patient.
func (g *Grain) RecordVaccination(req *messages.RecordVaccinationRequest, ctx actorcluster.GrainContext) (*messages.VaccinationReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_CREATE_VACCINATION
	if err := g.clinicalWrite(ctx, c, action); err != nil {
		return nil, err
	}
	fp := clinicalFingerprint(req.GetVaccination())
	replay := func() (*messages.VaccinationReply, bool, error) {
		if req.GetIdempotencyKey() == "" {
			return nil, false, nil
		}
		k, err := g.key()
		if err != nil {
			return nil, true, g.storeError(ctx, "data key", err)
		}
		sctx, cancel := g.storeCtx()
		defer cancel()
		prior, priorFP, err := g.deps.DB.VaccinationByKey(sctx, k, g.id, req.GetIdempotencyKey())
		switch {
		case errors.Is(err, persistence.ErrNotFound):
			return nil, false, nil
		case err != nil:
			return nil, true, g.storeError(ctx, "vaccination by key", err)
		case !bytes.Equal(priorFP, fp):
			return nil, true, g.refuse(ctx, c, action, g.id, messages.ErrIdempotencyKeyReused("the idempotency key was used for a different vaccination"))
		}
		if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
			return nil, true, err
		}
		return &messages.VaccinationReply{Vaccination: prior, Replayed: true}, true, nil
	}
	if reply, done, err := replay(); done || err != nil {
		return reply, err
	}
	v, err := NewVaccination(req.GetVaccination(), g.id, c.GetSubject(), g.deps.Now())
	if err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	err = g.deps.DB.RecordVaccination(g.written(sctx, c, action, ""), g.fence, k, v, req.GetIdempotencyKey(), fp)
	if errors.Is(err, persistence.ErrExists) {
		if reply, done, err := replay(); done || err != nil {
			return reply, err
		}
	}
	if err != nil {
		return nil, g.storeError(ctx, "record vaccination", err)
	}
	g.chained(ctx)
	return &messages.VaccinationReply{Vaccination: v}, nil
}

// Vaccinations lists the patient's vaccinations, newest first.
func (g *Grain) Vaccinations(req *messages.VaccinationsRequest, ctx actorcluster.GrainContext) (*messages.VaccinationsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_LIST_VACCINATIONS
	limit, after, err := g.clinicalRead(ctx, c, action, req.Limit, req.Cursor)
	if err != nil {
		return nil, err
	}
	before := ""
	if req.Cursor != "" {
		before = after.start.Format(time.DateOnly)
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.Vaccinations(sctx, k, g.id, before, after.id, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "vaccinations", err)
	}
	reply := &messages.VaccinationsReply{Vaccinations: rows}
	if len(rows) > limit {
		last := rows[limit-1]
		day, _ := time.Parse(time.DateOnly, last.Date)
		reply.Vaccinations, reply.NextCursor = rows[:limit], encodeAppointmentCursor(day, last.Id)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}

// ClinicalHistory lists the changes of blood type and allergies, newest
// first; the cursor is the last version seen.
func (g *Grain) ClinicalHistory(req *messages.ClinicalHistoryRequest, ctx actorcluster.GrainContext) (*messages.ClinicalHistoryReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_CLINICAL_HISTORY
	limit, _, err := g.clinicalRead(ctx, c, action, req.Limit, "")
	if err != nil {
		return nil, err
	}
	var before int64
	if req.Cursor != "" {
		if before, err = strconv.ParseInt(req.Cursor, 10, 64); err != nil || before < 1 {
			return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("bad cursor").
				WithMetadata(map[string]string{"field:cursor": "is not a cursor this API returned"}))
		}
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.ClinicalHistory(sctx, k, g.id, before, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "clinical history", err)
	}
	reply := &messages.ClinicalHistoryReply{}
	for i, r := range rows {
		if i == limit {
			reply.NextCursor = strconv.FormatInt(rows[limit-1].Version, 10)
			break
		}
		blood, _ := messages.ParseBloodType(r.BloodType)
		reply.Changes = append(reply.Changes, &messages.ClinicalChange{Version: r.Version, ChangedAt: timestamppb.New(r.ChangedAt),
			ChangedBy: r.ChangedBy, BloodType: blood, Allergies: r.Allergies})
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}
