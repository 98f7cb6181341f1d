package edge

import (
	"math"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type diagnosisJSON struct {
	ID     string `json:"id,omitempty"`
	Code   string `json:"code"`
	Text   string `json:"text"`
	Status string `json:"status,omitempty"`
	Onset  string `json:"onset,omitempty"`
}

type visitJSON struct {
	ID            string          `json:"id"`
	PatientID     string          `json:"patient_id"`
	DoctorID      string          `json:"doctor_id"`
	AppointmentID string          `json:"appointment_id,omitempty"`
	OccurredAt    string          `json:"occurred_at"`
	Reason        string          `json:"reason"`
	Notes         string          `json:"notes"`
	Diagnoses     []diagnosisJSON `json:"diagnoses"`
	CreatedAt     string          `json:"created_at"`
}

// visitInput is the body of POST /v1/patients/{id}/visits; the doctor is the caller.
type visitInput struct {
	OccurredAt    string          `json:"occurred_at"`
	AppointmentID string          `json:"appointment_id"`
	Reason        string          `json:"reason"`
	Notes         string          `json:"notes"`
	Diagnoses     []diagnosisJSON `json:"diagnoses"`
}

func toVisitJSON(v *messages.Visit) visitJSON {
	out := visitJSON{ID: v.Id, PatientID: v.PatientId, DoctorID: v.DoctorId, AppointmentID: v.AppointmentId,
		OccurredAt: instant(v.OccurredAt.AsTime()), Reason: v.Reason, Notes: v.Notes,
		Diagnoses: make([]diagnosisJSON, 0, len(v.Diagnoses)), CreatedAt: instant(v.CreatedAt.AsTime())}
	for _, d := range v.Diagnoses {
		out.Diagnoses = append(out.Diagnoses, diagnosisJSON{ID: d.Id, Code: d.Code, Text: d.Text, Status: d.Status.Name(), Onset: d.Onset})
	}
	return out
}

func (s *Server) recordVisit(c *fiber.Ctx) error {
	id, err := patientID(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in visitInput
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	// The grain validates, after its access check: a caller who may not
	// record visits learns that (and is audited), not what is malformed.
	// Values that do not parse travel as invalid ones the grain names.
	v := &messages.Visit{AppointmentId: in.AppointmentID, Reason: in.Reason, Notes: in.Notes}
	if in.OccurredAt != "" {
		if at, err := time.Parse(time.RFC3339, in.OccurredAt); err == nil {
			v.OccurredAt = timestamppb.New(at)
		} else {
			v.OccurredAt = &timestamppb.Timestamp{Seconds: math.MinInt64}
		}
	}
	for _, d := range in.Diagnoses {
		status, ok := messages.ParseDiagnosisStatus(d.Status)
		if !ok && d.Status != "" {
			status = -1
		}
		v.Diagnoses = append(v.Diagnoses, &messages.Diagnosis{Code: d.Code, Text: d.Text, Status: status, Onset: d.Onset})
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.RecordVisitRequest{Caller: caller, Visit: v, IdempotencyKey: key}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.VisitReply, error) {
		return g.RecordVisit(req, opts...)
	})
	if err != nil {
		return err
	}
	return created(c, "/v1/patients/"+id+"/visits/"+reply.Visit.Id, reply.Replayed, toVisitJSON(reply.Visit))
}

func (s *Server) listVisits(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.VisitsReply, error) {
		return g.Visits(&messages.VisitsRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	out := struct {
		Visits     []visitJSON `json:"visits"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Visits: make([]visitJSON, 0, len(reply.Visits)), NextCursor: reply.NextCursor}
	for _, v := range reply.Visits {
		out.Visits = append(out.Visits, toVisitJSON(v))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

type vaccinationJSON struct {
	ID          string `json:"id"`
	PatientID   string `json:"patient_id"`
	ATCCode     string `json:"atc_code"`
	VaccineName string `json:"vaccine_name"`
	Date        string `json:"date"`
	DoseNumber  int32  `json:"dose_number"`
	Lot         string `json:"lot,omitempty"`
	GivenBy     string `json:"given_by"`
	CreatedAt   string `json:"created_at"`
}

// vaccinationInput is the body of POST /v1/patients/{id}/vaccinations; the
// doctor who gave the dose is the caller.
type vaccinationInput struct {
	ATCCode     string `json:"atc_code"`
	VaccineName string `json:"vaccine_name"`
	Date        string `json:"date"`
	DoseNumber  int32  `json:"dose_number"`
	Lot         string `json:"lot"`
}

func toVaccinationJSON(v *messages.Vaccination) vaccinationJSON {
	return vaccinationJSON{ID: v.Id, PatientID: v.PatientId, ATCCode: v.AtcCode, VaccineName: v.VaccineName, Date: v.Date,
		DoseNumber: v.DoseNumber, Lot: v.Lot, GivenBy: v.GivenBy, CreatedAt: instant(v.CreatedAt.AsTime())}
}

func (s *Server) recordVaccination(c *fiber.Ctx) error {
	id, err := patientID(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	var in vaccinationInput
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
	req := &messages.RecordVaccinationRequest{Caller: caller, IdempotencyKey: key, Vaccination: &messages.Vaccination{
		AtcCode: in.ATCCode, VaccineName: in.VaccineName, Date: in.Date, DoseNumber: in.DoseNumber, Lot: in.Lot}}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.VaccinationReply, error) {
		return g.RecordVaccination(req, opts...)
	})
	if err != nil {
		return err
	}
	return created(c, "/v1/patients/"+id+"/vaccinations/"+reply.Vaccination.Id, reply.Replayed, toVaccinationJSON(reply.Vaccination))
}

func (s *Server) listVaccinations(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.VaccinationsReply, error) {
		return g.Vaccinations(&messages.VaccinationsRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	out := struct {
		Vaccinations []vaccinationJSON `json:"vaccinations"`
		NextCursor   string            `json:"next_cursor,omitempty"`
	}{Vaccinations: make([]vaccinationJSON, 0, len(reply.Vaccinations)), NextCursor: reply.NextCursor}
	for _, v := range reply.Vaccinations {
		out.Vaccinations = append(out.Vaccinations, toVaccinationJSON(v))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

func (s *Server) clinicalHistory(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.ClinicalHistoryReply, error) {
		return g.ClinicalHistory(&messages.ClinicalHistoryRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	type change struct {
		Version   int64         `json:"version"`
		ChangedAt string        `json:"changed_at"`
		ChangedBy string        `json:"changed_by"`
		BloodType string        `json:"blood_type,omitempty"`
		Allergies []allergyJSON `json:"allergies"`
	}
	out := struct {
		Changes    []change `json:"changes"`
		NextCursor string   `json:"next_cursor,omitempty"`
	}{Changes: make([]change, 0, len(reply.Changes)), NextCursor: reply.NextCursor}
	for _, ch := range reply.Changes {
		out.Changes = append(out.Changes, change{Version: ch.Version, ChangedAt: instant(ch.ChangedAt.AsTime()), ChangedBy: ch.ChangedBy,
			BloodType: ch.BloodType.Name(), Allergies: toAllergyJSON(ch.Allergies)})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

func (s *Server) timeline(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.TimelineReply, error) {
		return g.Timeline(&messages.TimelineRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	type entry struct {
		Kind     string `json:"kind"`
		ID       string `json:"id"`
		At       string `json:"at"`
		Summary  string `json:"summary"`
		DoctorID string `json:"doctor_id,omitempty"`
		VisitID  string `json:"visit_id,omitempty"`
	}
	out := struct {
		Entries    []entry `json:"entries"`
		NextCursor string  `json:"next_cursor,omitempty"`
	}{Entries: make([]entry, 0, len(reply.Entries)), NextCursor: reply.NextCursor}
	for _, e := range reply.Entries {
		out.Entries = append(out.Entries, entry{Kind: e.Kind, ID: e.Id, At: instant(e.At.AsTime()), Summary: e.Summary, DoctorID: e.DoctorId, VisitID: e.VisitId})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}
