package patient

import (
	"context"
	"errors"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxLegalHoldReasonRunes bounds a legal hold's reason.
const MaxLegalHoldReasonRunes = 500

// ErasureOf is the protobuf form of an erasure request.
func ErasureOf(e persistence.Erasure) *messages.Erasure {
	out := &messages.Erasure{Id: e.ID, PatientId: e.PatientID, State: e.State, RequestedBy: e.RequestedBy,
		RequestedAt: timestamppb.New(e.RequestedAt), ReviewedBy: e.ReviewedBy, ReviewNote: e.ReviewNote,
		BlockedBy: e.BlockedBy, ProofJson: string(e.Proof)}
	for t, at := range map[**timestamppb.Timestamp]time.Time{&out.ReviewedAt: e.ReviewedAt, &out.RetainUntil: e.RetainUntil, &out.ErasedAt: e.ErasedAt} {
		if !at.IsZero() {
			*t = timestamppb.New(at)
		}
	}
	return out
}

// RequestErasure files the patient's request to be erased (GDPR art. 17):
// the patient, or a receptionist for them. It waits in the review queue;
// a patient with an open request gets that one back.
func (g *Grain) RequestErasure(req *messages.RequestErasureRequest, ctx actorcluster.GrainContext) (*messages.ErasureReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_REQUEST_ERASURE
	if d := access.ExerciseDataRights(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if !validate.ID(req.GetErasureId()) {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("erasure_id must be a UUID"))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	e, err := g.deps.DB.RequestErasure(g.written(sctx, c, action, req.GetErasureId()), g.fence, persistence.Erasure{ID: req.GetErasureId(), PatientID: g.id,
		RequestedBy: c.GetSubject(), RequestedAt: g.deps.Now().UTC()})
	switch {
	case errors.Is(err, persistence.ErrExists):
		// Nothing was written: the open request answers.
		if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, e.ID+" already open"); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, g.storeError(ctx, "request erasure", err)
	default:
		g.chained(ctx)
	}
	return &messages.ErasureReply{Erasure: ErasureOf(e)}, nil
}

// Erasure shows the patient's latest erasure request.
func (g *Grain) Erasure(req *messages.GetErasureRequest, ctx actorcluster.GrainContext) (*messages.ErasureReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_READ_ERASURE
	if d := access.ExerciseDataRights(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	e, err := g.deps.DB.LatestErasure(sctx, g.id)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no erasure was asked for"))
	case err != nil:
		return nil, g.storeError(ctx, "erasure", err)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, e.ID); err != nil {
		return nil, err
	}
	return &messages.ErasureReply{Erasure: ErasureOf(e)}, nil
}

// Erase carries out an approved erasure (member only: the retention sweep
// sends it). While a retention period, a legal hold or an appointment to
// come stands in the way, the request waits and says why; otherwise the
// patient is erased by crypto-shredding (persistence.ErasePatient) and this
// activation forgets everything and stops.
func (g *Grain) Erase(req *messages.EraseRequest, ctx actorcluster.GrainContext) (*messages.ErasureReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_ERASE
	sctx, cancel := g.storeCtx()
	defer cancel()
	e, err := g.deps.DB.GetErasure(sctx, req.GetErasureId())
	switch {
	case errors.Is(err, persistence.ErrNotFound) || err == nil && e.PatientID != g.id:
		return nil, messages.ErrNotFound("no erasure %s of this patient", req.GetErasureId())
	case err != nil:
		return nil, g.storeError(ctx, "erasure", err)
	case e.State != persistence.ErasureApproved:
		return &messages.ErasureReply{Erasure: ErasureOf(e)}, nil
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, messages.ErrNotFound("no patient %s", g.id)
	}
	now := g.deps.Now().UTC()
	until, err := g.deps.DB.RetainUntil(sctx, g.id, g.deps.Retention)
	if err != nil {
		return nil, g.storeError(ctx, "retention", err)
	}
	if until.After(now) {
		return g.blockErasure(sctx, e, persistence.BlockedByRetention, until)
	}
	proof, blobs, err := g.deps.DB.ErasePatient(g.written(sctx, c, action, e.ID), g.fence, e.ID, g.id, now)
	switch {
	case errors.Is(err, persistence.ErrLegalHold):
		return g.blockErasure(sctx, e, persistence.BlockedByLegalHold, time.Time{})
	case errors.Is(err, persistence.ErrUpcoming):
		return g.blockErasure(sctx, e, persistence.BlockedByUpcoming, time.Time{})
	case err != nil:
		return nil, g.storeError(ctx, "erase", err)
	}
	// The patient is gone: nothing in memory may outlive the rows.
	g.drop(ctx)
	g.deleteBlobs(e.ID, blobs)
	g.deps.Logger.Info("patient erased", "patient", g.id, "erasure", e.ID, "deleted", proof.Deleted, "blobs", proof.Blobs)
	g.chained(ctx)
	done, err := g.deps.DB.GetErasure(sctx, e.ID)
	if err != nil {
		return nil, messages.ErrStoreUnavailable("patient store unavailable")
	}
	return &messages.ErasureReply{Erasure: ErasureOf(done)}, nil
}

func (g *Grain) blockErasure(ctx context.Context, e persistence.Erasure, by string, until time.Time) (*messages.ErasureReply, error) {
	if e.BlockedBy != by || !e.RetainUntil.Equal(until) {
		if err := g.deps.DB.BlockErasure(ctx, e.ID, by, until); err != nil {
			g.deps.Logger.Error("patient store failed", "op", "block erasure", "patient", g.id, "error", err)
			return nil, messages.ErrStoreUnavailable("patient store unavailable")
		}
		e.BlockedBy, e.RetainUntil = by, until
	}
	return &messages.ErasureReply{Erasure: ErasureOf(e)}, nil
}

// deleteBlobs deletes an erased patient's document blobs. They are
// unreadable already (their keys died with the data key); what is left
// here the retention sweep deletes later.
func (g *Grain) deleteBlobs(erasureID string, keys []string) {
	if len(keys) == 0 || g.deps.Blobs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*g.deps.StoreTimeout)
	defer cancel()
	var gone []string
	for _, k := range keys {
		if err := g.deps.Blobs.Delete(ctx, k); err != nil {
			g.deps.Logger.Warn("blob not deleted; the retention sweep retries", "erasure", erasureID, "error", err)
			continue
		}
		gone = append(gone, k)
	}
	if erasureID != "" && len(gone) > 0 {
		if err := g.deps.DB.BlobsDeleted(ctx, erasureID, gone); err != nil {
			g.deps.Logger.Warn("deleted blobs not struck off; the retention sweep retries", "erasure", erasureID, "error", err)
		}
	}
}

// SetLegalHold places or lifts a legal hold (admins): while it stands,
// neither an erasure nor the retention sweep deletes the patient's records.
func (g *Grain) SetLegalHold(req *messages.SetLegalHoldRequest, ctx actorcluster.GrainContext) (*messages.LegalHoldReply, error) {
	c := req.GetCaller()
	action := messages.AuditAction_AUDIT_ACTION_LIFT_LEGAL_HOLD
	if req.GetHold() {
		action = messages.AuditAction_AUDIT_ACTION_PLACE_LEGAL_HOLD
	}
	if d := access.PlaceLegalHold(c); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	reason := strings.TrimSpace(req.GetReason())
	if req.GetHold() {
		var errs validate.Errors
		errs.Text("reason", reason, MaxLegalHoldReasonRunes, true)
		if err := errs.Err(); err != nil {
			return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
		}
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	h := persistence.LegalHold{Reason: reason, PlacedBy: c.GetSubject(), PlacedAt: g.deps.Now().UTC()}
	var err error
	wctx := g.written(sctx, c, action, "")
	if req.GetHold() {
		err = g.deps.DB.PlaceLegalHold(wctx, g.fence, g.id, h)
	} else {
		err = g.deps.DB.LiftLegalHold(wctx, g.fence, g.id)
	}
	if err != nil {
		return nil, g.storeError(ctx, action.Name(), err)
	}
	g.chained(ctx)
	if !req.GetHold() {
		return &messages.LegalHoldReply{}, nil
	}
	return &messages.LegalHoldReply{Held: true, Reason: h.Reason, PlacedBy: h.PlacedBy, PlacedAt: timestamppb.New(h.PlacedAt)}, nil
}

// ApplyRetention deletes the patient's records past their retention period
// (member only: the retention sweep sends it); nothing under a legal hold.
func (g *Grain) ApplyRetention(req *messages.ApplyRetentionRequest, ctx actorcluster.GrainContext) (*messages.ApplyRetentionReply, error) {
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, messages.ErrNotFound("no patient %s", g.id)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	wctx := g.written(sctx, req.GetCaller(), messages.AuditAction_AUDIT_ACTION_APPLY_RETENTION, "")
	deleted, blobs, err := g.deps.DB.ApplyRetention(wctx, g.fence, g.id, g.deps.Retention, g.deps.Now().UTC())
	if err != nil {
		return nil, g.storeError(ctx, "retention", err)
	}
	g.chained(ctx)
	g.deleteBlobs("", blobs)
	return &messages.ApplyRetentionReply{Deleted: deleted}, nil
}
