package edge

import (
	"encoding/json"
	"reflect"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"google.golang.org/protobuf/encoding/protojson"
)

type medicationJSON struct {
	ATCCode  string `json:"atc_code"`
	Name     string `json:"name"`
	Strength string `json:"strength,omitempty"`
	Form     string `json:"form,omitempty"`
}

type warningJSON struct {
	Kind                string         `json:"kind"`
	Severity            string         `json:"severity"`
	Blocking            bool           `json:"blocking"`
	Drug                medicationJSON `json:"drug"`
	Other               medicationJSON `json:"other"`
	OtherPrescriptionID string         `json:"other_prescription_id,omitempty"`
	Effect              string         `json:"effect"`
	Advice              string         `json:"advice"`
	Rule                string         `json:"rule"`
	Source              string         `json:"source"`
}

type dispenseJSON struct {
	Number      int32  `json:"number"`
	DispensedAt string `json:"dispensed_at"`
	DispensedBy string `json:"dispensed_by"`
	Quantity    string `json:"quantity"`
}

type prescriptionJSON struct {
	ID             string         `json:"id"`
	PatientID      string         `json:"patient_id"`
	PrescriberID   string         `json:"prescriber_id"`
	Medication     medicationJSON `json:"medication"`
	Dose           string         `json:"dose"`
	Route          string         `json:"route"`
	Frequency      string         `json:"frequency"`
	DurationDays   int32          `json:"duration_days"`
	Refills        int32          `json:"refills"`
	RefillsLeft    int32          `json:"refills_left"`
	Notes          string         `json:"notes"`
	Status         string         `json:"status"`
	Warnings       []warningJSON  `json:"warnings"`
	OverrideReason string         `json:"override_reason,omitempty"`
	Dispenses      []dispenseJSON `json:"dispenses"`
	CreatedAt      string         `json:"created_at"`
	ExpiresAt      string         `json:"expires_at"`
	EndedAt        string         `json:"ended_at,omitempty"`
	EndedBy        string         `json:"ended_by,omitempty"`
	EndReason      string         `json:"end_reason,omitempty"`
}

// prescriptionInput is the body of POST /v1/prescriptions; the prescriber is the caller.
type prescriptionInput struct {
	PatientID    string         `json:"patient_id"`
	Medication   medicationJSON `json:"medication"`
	Dose         string         `json:"dose"`
	Route        string         `json:"route"`
	Frequency    string         `json:"frequency"`
	DurationDays int32          `json:"duration_days"`
	Refills      int32          `json:"refills"`
	Notes        string         `json:"notes"`
	// OverrideReason prescribes despite blocking warnings; stored and audited.
	OverrideReason string `json:"override_reason"`
}

func toMedicationJSON(m *messages.Medication) medicationJSON {
	return medicationJSON{ATCCode: m.GetAtcCode(), Name: m.GetName(), Strength: m.GetStrength(), Form: m.GetForm()}
}

func toWarningsJSON(ws []*messages.PrescriptionWarning) []warningJSON {
	out := make([]warningJSON, 0, len(ws))
	for _, w := range ws {
		out = append(out, warningJSON{Kind: w.Kind, Severity: w.Severity, Blocking: w.Blocking, Drug: toMedicationJSON(w.Drug),
			Other: toMedicationJSON(w.Other), OtherPrescriptionID: w.OtherPrescriptionId, Effect: w.Effect, Advice: w.Advice,
			Rule: w.Rule, Source: w.Source})
	}
	return out
}

// interactionWarnings reads the warnings an INTERACTION refusal carries.
func interactionWarnings(md map[string]string) []warningJSON {
	var ws messages.PrescriptionWarnings
	if err := protojson.Unmarshal([]byte(md["warnings"]), &ws); err != nil {
		return nil
	}
	return toWarningsJSON(ws.Warnings)
}

func toPrescriptionJSON(p *messages.PrescriptionRecord) prescriptionJSON {
	out := prescriptionJSON{ID: p.Id, PatientID: p.PatientId, PrescriberID: p.PrescriberId, Medication: toMedicationJSON(p.Medication),
		Dose: p.Dose, Route: p.Route, Frequency: p.Frequency, DurationDays: p.DurationDays, Refills: p.Refills,
		Notes: p.Notes, Status: p.Status.Name(),
		Warnings: toWarningsJSON(p.Warnings), OverrideReason: p.OverrideReason, Dispenses: make([]dispenseJSON, 0, len(p.Dispenses)),
		CreatedAt: instant(p.CreatedAt.AsTime()), ExpiresAt: instant(p.ExpiresAt.AsTime()), EndedBy: p.EndedBy, EndReason: p.EndReason}
	// The first dispense is the prescription itself; later ones are refills.
	out.RefillsLeft = p.Refills - max(0, int32(len(p.Dispenses))-1)
	if p.Status != messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE {
		out.RefillsLeft = 0
	}
	if p.EndedAt != nil {
		out.EndedAt = instant(p.EndedAt.AsTime())
	}
	for _, d := range p.Dispenses {
		out.Dispenses = append(out.Dispenses, dispenseJSON{Number: d.Number, DispensedAt: instant(d.DispensedAt.AsTime()),
			DispensedBy: d.DispensedBy, Quantity: d.Quantity})
	}
	return out
}

func callPrescription[T any](s *Server, c *fiber.Ctx, id string, call func(*messages.PrescriptionGrainClient, ...actorcluster.GrainCallOption) (T, error)) (T, error) {
	return callGrain(s, c, "Prescription", id, messages.GetPrescriptionGrainClient, call)
}

func (s *Server) createPrescription(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in prescriptionInput
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	// The grains validate, after the access check.
	req := &messages.CreatePrescriptionRequest{Caller: caller, IdempotencyKey: key, OverrideReason: in.OverrideReason,
		Prescription: &messages.PrescriptionRecord{PatientId: in.PatientID,
			Medication: &messages.Medication{AtcCode: in.Medication.ATCCode, Name: in.Medication.Name, Strength: in.Medication.Strength, Form: in.Medication.Form},
			Dose:       in.Dose, Route: in.Route, Frequency: in.Frequency, DurationDays: in.DurationDays, Refills: in.Refills, Notes: in.Notes}}
	id, err := s.newID("prescription", caller.GetSubject(), key)
	if err != nil {
		return err
	}
	reply, err := callPrescription(s, c, id, func(g *messages.PrescriptionGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PrescriptionReply, error) {
		return g.Create(req, opts...)
	})
	if err != nil {
		return err
	}
	return created(c, "/v1/prescriptions/"+id, reply.Replayed, toPrescriptionJSON(reply.Prescription))
}

func (s *Server) getPrescription(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	reply, err := callPrescription(s, c, id, func(g *messages.PrescriptionGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PrescriptionReply, error) {
		return g.Get(&messages.GetPrescriptionRequest{Caller: caller}, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(toPrescriptionJSON(reply.Prescription))
}

func (s *Server) dispensePrescription(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Quantity quantityJSON `json:"quantity"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.DispenseRequest{Caller: caller, Quantity: string(in.Quantity), IdempotencyKey: key}
	reply, err := callPrescription(s, c, id, func(g *messages.PrescriptionGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PrescriptionReply, error) {
		return g.Dispense(req, opts...)
	})
	if err != nil {
		return err
	}
	if reply.Replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	return c.JSON(toPrescriptionJSON(reply.Prescription))
}

func (s *Server) cancelPrescription(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	reply, err := callPrescription(s, c, id, func(g *messages.PrescriptionGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PrescriptionReply, error) {
		return g.Cancel(&messages.CancelPrescriptionRequest{Caller: caller, Reason: in.Reason}, opts...)
	})
	if err != nil {
		return err
	}
	return c.JSON(toPrescriptionJSON(reply.Prescription))
}

func (s *Server) listPrescriptions(c *fiber.Ctx) error {
	status, ok := messages.ParsePrescriptionStatus(c.Query("status"))
	if !ok && c.Query("status") != "" {
		return malformed("status must be active, completed, cancelled or expired",
			FieldError{"status", "must be active, completed, cancelled or expired"})
	}
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.PrescriptionsReply, error) {
		return g.Prescriptions(&messages.PrescriptionsRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor, Status: status}, opts...)
	})
	if err != nil {
		return err
	}
	return prescriptionsPage(c, reply)
}

func prescriptionsPage(c *fiber.Ctx, reply *messages.PrescriptionsReply) error {
	out := struct {
		Prescriptions []prescriptionJSON `json:"prescriptions"`
		NextCursor    string             `json:"next_cursor,omitempty"`
	}{Prescriptions: make([]prescriptionJSON, 0, len(reply.Prescriptions)), NextCursor: reply.NextCursor}
	for _, p := range reply.Prescriptions {
		out.Prescriptions = append(out.Prescriptions, toPrescriptionJSON(p))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// quantityJSON is a dispensed quantity: a number (30) or its text ("30",
// "2 boxes"); the grain checks the text.
type quantityJSON string

func (q *quantityJSON) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*q = quantityJSON(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[string](), Field: "quantity"}
	}
	*q = quantityJSON(s)
	return nil
}
