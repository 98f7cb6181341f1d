package patient

import (
	"bytes"
	"errors"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// key returns this patient's data key, creating it on first use
// (persistence.DataKey).
func (g *Grain) key() (*seal.Key, error) {
	if g.dataKey != nil {
		return g.dataKey, nil
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	k, err := g.deps.DB.DataKey(ctx, g.deps.Master, g.id)
	if err != nil {
		return nil, err
	}
	g.dataKey = k
	return k, nil
}

// Clinical text is sealed bound to its row and field, so a value copied
// into another row or column does not open.
func visitAAD(visitID, field string) string { return "visit/" + visitID + "/" + field }

func sealVisit(k *seal.Key, v *messages.Visit, createdBy string, fingerprint []byte) persistence.StoredVisit {
	out := persistence.StoredVisit{ID: v.Id, PatientID: v.PatientId, DoctorID: v.DoctorId, AppointmentID: v.AppointmentId,
		OccurredAt: v.OccurredAt.AsTime(), CreatedAt: v.CreatedAt.AsTime(), CreatedBy: createdBy, Fingerprint: fingerprint,
		ReasonSealed: k.Seal([]byte(v.Reason), visitAAD(v.Id, "reason")), NotesSealed: k.Seal([]byte(v.Notes), visitAAD(v.Id, "notes"))}
	for _, d := range v.Diagnoses {
		out.Diagnoses = append(out.Diagnoses, persistence.StoredDiagnosis{ID: d.Id, Status: d.Status.Name(), Onset: d.Onset,
			CodeSealed: persistence.SealDiagnosisCode(k, d.Id, d.Code), TextSealed: k.Seal([]byte(d.Text), visitAAD(v.Id, "diagnosis/"+d.Id))})
		out.Codes = append(out.Codes, d.Code)
	}
	return out
}

func openVisit(k *seal.Key, s persistence.StoredVisit) (*messages.Visit, error) {
	reason, err := k.Open(s.ReasonSealed, visitAAD(s.ID, "reason"))
	if err != nil {
		return nil, err
	}
	notes, err := k.Open(s.NotesSealed, visitAAD(s.ID, "notes"))
	if err != nil {
		return nil, err
	}
	v := &messages.Visit{Id: s.ID, PatientId: s.PatientID, DoctorId: s.DoctorID, AppointmentId: s.AppointmentID,
		OccurredAt: timestamppb.New(s.OccurredAt), CreatedAt: timestamppb.New(s.CreatedAt), Reason: string(reason), Notes: string(notes)}
	for _, d := range s.Diagnoses {
		text, err := k.Open(d.TextSealed, visitAAD(s.ID, "diagnosis/"+d.ID))
		if err != nil {
			return nil, err
		}
		code, err := persistence.OpenDiagnosisCode(k, d)
		if err != nil {
			return nil, err
		}
		status, _ := messages.ParseDiagnosisStatus(d.Status)
		v.Diagnoses = append(v.Diagnoses, &messages.Diagnosis{Id: d.ID, Code: code, Text: string(text), Status: status, Onset: d.Onset})
	}
	return v, nil
}

// RecordVisit records a visit with its diagnoses: a doctor who treats the patient.
func (g *Grain) RecordVisit(req *messages.RecordVisitRequest, ctx actorcluster.GrainContext) (*messages.VisitReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_CREATE_VISIT
	if err := g.clinicalWrite(ctx, c, action); err != nil {
		return nil, err
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	fp := VisitFingerprint(req.GetVisit())
	if key := req.GetIdempotencyKey(); key != "" {
		if reply, done, err := g.replayVisit(ctx, c, k, key, fp); done || err != nil {
			return reply, err
		}
	}
	v, err := NewVisit(req.GetVisit(), g.id, c.GetSubject(), g.deps.Now())
	if err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	if id := v.GetAppointmentId(); id != "" {
		a, _, err := g.deps.DB.GetAppointment(sctx, id)
		if err != nil && !errors.Is(err, persistence.ErrNoAppointment) {
			return nil, g.storeError(ctx, "visit appointment", err)
		}
		if err := VisitFitsAppointment(v, a); err != nil {
			return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
		}
	}
	err = g.deps.DB.RecordVisit(g.written(sctx, c, action, ""), g.fence, sealVisit(k, v, c.GetSubject(), fp), req.GetIdempotencyKey())
	if errors.Is(err, persistence.ErrExists) {
		// Another activation recorded the same key first: answer as its replay.
		if reply, done, err := g.replayVisit(ctx, c, k, req.GetIdempotencyKey(), fp); done || err != nil {
			return reply, err
		}
	}
	if err != nil {
		return nil, g.storeError(ctx, "record visit", err)
	}
	g.chained(ctx)
	return &messages.VisitReply{Visit: v}, nil
}

// replayVisit answers a repeated idempotency key: the first visit, or a
// refusal when the key came with another visit. done is false when the
// key is unused.
func (g *Grain) replayVisit(ctx actorcluster.GrainContext, c *messages.Caller, k *seal.Key, key string, fp []byte) (*messages.VisitReply, bool, error) {
	const action = messages.AuditAction_AUDIT_ACTION_CREATE_VISIT
	sctx, cancel := g.storeCtx()
	defer cancel()
	prior, err := g.deps.DB.VisitByKey(sctx, g.id, key)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, true, g.storeError(ctx, "visit by key", err)
	case !bytes.Equal(prior.Fingerprint, fp):
		return nil, true, g.refuse(ctx, c, action, g.id, messages.ErrIdempotencyKeyReused("the idempotency key was used for a different visit"))
	}
	v, err := openVisit(k, prior)
	if err != nil {
		return nil, true, g.storeError(ctx, "open visit", err)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "replayed"); err != nil {
		return nil, true, err
	}
	return &messages.VisitReply{Visit: v, Replayed: true}, true, nil
}

// Visits lists the patient's visits, newest first: the patient and doctors who treat them.
func (g *Grain) Visits(req *messages.VisitsRequest, ctx actorcluster.GrainContext) (*messages.VisitsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_LIST_VISITS
	limit, after, err := g.clinicalRead(ctx, c, action, req.Limit, req.Cursor)
	if err != nil {
		return nil, err
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.Visits(sctx, g.id, after.start, after.id, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "visits", err)
	}
	reply := &messages.VisitsReply{}
	for i, row := range rows {
		if i == limit {
			last := rows[limit-1]
			reply.NextCursor = encodeAppointmentCursor(last.OccurredAt, last.ID)
			break
		}
		v, err := openVisit(k, row)
		if err != nil {
			return nil, g.storeError(ctx, "open visit", err)
		}
		reply.Visits = append(reply.Visits, v)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}
