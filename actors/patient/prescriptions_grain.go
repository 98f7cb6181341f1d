package patient

import (
	"errors"
	"fmt"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/prescription"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/encoding/protojson"
)

// AdmitPrescription is the check a new prescription passes before it is
// stored, asked by its prescription grain. The patient grain answers one
// request at a time, and the check reads the active prescriptions in the
// transaction that inserts the new one under this grain's fence, so of two
// prescriptions created together the second is checked against the first.
func (g *Grain) AdmitPrescription(req *messages.AdmitPrescriptionRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_CREATE_PRESCRIPTION
	if err := g.clinicalWrite(ctx, c, action); err != nil {
		return nil, err
	}
	in := req.GetPrescription()
	p, err := prescription.New(in, in.GetId(), g.id, c.GetSubject(), g.deps.Now())
	var v validate.Errors
	if err != nil {
		errors.As(err, &v)
	}
	v.LongText("override_reason", req.GetOverrideReason(), prescription.MaxReasonChars, false)
	if err := v.Err(); err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	// The creation's audit event is written with the prescription; what
	// was overridden is clinical (it stays sealed with the prescription):
	// the trail counts it.
	created := audit.Event(c, action, "patient", g.id, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", g.deps.Now())
	wctx := g.deps.Audit.InWrite(sctx, created)
	admitted, err := g.deps.DB.AdmitPrescription(wctx, g.fence, g.deps.Now(), func(active []persistence.ActiveDrug) (*persistence.StoredPrescription, error) {
		others := make([]prescription.Active, len(active))
		for i, a := range active {
			others[i] = prescription.Active{ID: a.PrescriptionID, Medication: a.Medication}
		}
		var blocked bool
		p.Warnings, blocked = prescription.Check(g.deps.Interactions, p.Medication, others, g.rec.GetAllergies())
		if blocked && req.GetOverrideReason() == "" {
			return nil, nil
		}
		created.Detail = ""
		if blocked {
			created.Detail = fmt.Sprintf("override of %d blocking warnings", blocking(p.Warnings))
		}
		p.OverrideReason = req.GetOverrideReason()
		sp := prescription.Seal(k, p, req.GetFingerprint())
		return &sp, nil
	})
	switch {
	case errors.Is(err, persistence.ErrExists):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrAlreadyExists("prescription %s already exists", p.Id).
			WithMetadata(map[string]string{"id": p.Id}))
	case err != nil:
		return nil, g.storeError(ctx, "admit prescription", err)
	case !admitted:
		ws, _ := protojson.Marshal(&messages.PrescriptionWarnings{Warnings: p.Warnings})
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInteraction("the prescription meets blocking warnings (listed in warnings); give an override reason to prescribe it anyway").
			WithMetadata(map[string]string{"warnings": string(ws)}))
	}
	g.chained(ctx)
	return &messages.PrescriptionReply{Prescription: p}, nil
}

// blocking counts the blocking warnings.
func blocking(ws []*messages.PrescriptionWarning) int {
	n := 0
	for _, w := range ws {
		if w.Blocking {
			n++
		}
	}
	return n
}

// Prescriptions lists the patient's prescriptions, newest first, in a
// status or all.
func (g *Grain) Prescriptions(req *messages.PrescriptionsRequest, ctx actorcluster.GrainContext) (*messages.PrescriptionsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_LIST_PRESCRIPTIONS
	limit, after, err := g.clinicalReadAs(ctx, c, action, req.Limit, req.Cursor, func(treats bool) access.Decision {
		return access.ListPrescriptions(c, g.id, treats, req.GetStatus())
	})
	if err != nil {
		return nil, err
	}
	status := req.GetStatus().Name()
	if status == "" && req.GetStatus() != messages.PrescriptionStatus_PRESCRIPTION_STATUS_UNSPECIFIED {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrInvalidArgument("bad status").
			WithMetadata(map[string]string{"field:status": "must be active, completed, cancelled or expired"}))
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.Prescriptions(sctx, g.id, status, after.start, after.id, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "prescriptions", err)
	}
	reply := &messages.PrescriptionsReply{}
	for i, sp := range rows {
		if i == limit {
			last := rows[limit-1].Record
			reply.NextCursor = encodeAppointmentCursor(last.CreatedAt.AsTime(), last.Id)
			break
		}
		p, err := prescription.Open(k, sp)
		if err != nil {
			return nil, g.storeError(ctx, "open prescription", err)
		}
		reply.Prescriptions = append(reply.Prescriptions, p)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}
