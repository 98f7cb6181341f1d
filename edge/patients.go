package edge

import (
	"bytes"
	"fmt"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type allergyJSON struct {
	Substance string `json:"substance"`
	Reaction  string `json:"reaction,omitempty"`
	Severity  string `json:"severity"`
	// ATCCode is the allergen's ATC code or class, when known.
	ATCCode string `json:"atc_code,omitempty"`
}

func toAllergyJSON(as []*messages.Allergy) []allergyJSON {
	out := make([]allergyJSON, 0, len(as))
	for _, a := range as {
		out = append(out, allergyJSON{Substance: a.Substance, Reaction: a.Reaction, Severity: a.Severity.Name(), ATCCode: a.AtcCode})
	}
	return out
}

// patientJSON is a patient as the API shows it.
type patientJSON struct {
	ID         string `json:"id"`
	IDNP       string `json:"idnp"`
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
	BirthDate  string `json:"birth_date"`
	Sex        string `json:"sex"`
	Phone      string `json:"phone,omitempty"`
	Email      string `json:"email,omitempty"`
	BloodType  string `json:"blood_type,omitempty"`
	// Allergies is absent (not empty) when clinical data is withheld: an
	// empty list would read as "no known allergies".
	Allergies        *[]allergyJSON `json:"allergies,omitempty"`
	ClinicalWithheld bool           `json:"clinical_withheld,omitempty"`
	Version          int64          `json:"version"`
	CreatedAt        string         `json:"created_at"`
	UpdatedAt        string         `json:"updated_at"`
}

// registerJSON is the body of POST /v1/patients.
type registerJSON struct {
	IDNP       string        `json:"idnp"`
	GivenName  string        `json:"given_name"`
	FamilyName string        `json:"family_name"`
	BirthDate  string        `json:"birth_date"`
	Sex        string        `json:"sex"`
	Phone      string        `json:"phone"`
	Email      string        `json:"email"`
	BloodType  string        `json:"blood_type"`
	Allergies  []allergyJSON `json:"allergies"`
}

func instant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func toPatientJSON(reply *messages.PatientReply) patientJSON {
	p := reply.Patient
	out := patientJSON{
		ID: p.Id, IDNP: p.Idnp, GivenName: p.GivenName, FamilyName: p.FamilyName, BirthDate: p.BirthDate,
		Sex: p.Sex.Name(), Phone: p.Phone, Email: p.Email, BloodType: p.BloodType.Name(),
		ClinicalWithheld: reply.ClinicalWithheld, Version: p.Version,
		CreatedAt: instant(p.CreatedAt.AsTime()), UpdatedAt: instant(p.UpdatedAt.AsTime()),
	}
	if !reply.ClinicalWithheld {
		allergies := toAllergyJSON(p.Allergies)
		out.Allergies = &allergies
	}
	return out
}

// enumErrors collects values that name no enum member.
type enumErrors []FieldError

func (e *enumErrors) sex(field, v string) messages.Sex {
	s, ok := messages.ParseSex(v)
	if !ok && v != "" {
		*e = append(*e, FieldError{field, "must be one of female, male, other, unknown"})
	}
	return s
}

func (e *enumErrors) bloodType(field, v string) messages.BloodType {
	b, ok := messages.ParseBloodType(v)
	if !ok {
		*e = append(*e, FieldError{field, "must be one of O-, O+, A-, A+, B-, B+, AB-, AB+"})
	}
	return b
}

func (e *enumErrors) allergies(field string, in []allergyJSON) []*messages.Allergy {
	out := make([]*messages.Allergy, 0, len(in))
	for i, a := range in {
		sev, ok := messages.ParseAllergySeverity(a.Severity)
		if !ok && a.Severity != "" {
			*e = append(*e, FieldError{fmt.Sprintf("%s[%d].severity", field, i), "must be one of mild, moderate, severe"})
		}
		out = append(out, &messages.Allergy{Substance: a.Substance, Reaction: a.Reaction, Severity: sev, AtcCode: a.ATCCode})
	}
	return out
}

func (s *Server) registerPatient(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in registerJSON
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	var bad enumErrors
	rec := &messages.PatientRecord{
		Idnp: in.IDNP, GivenName: in.GivenName, FamilyName: in.FamilyName, BirthDate: in.BirthDate,
		Sex: bad.sex("sex", in.Sex), Phone: in.Phone, Email: in.Email,
		BloodType: bad.bloodType("blood_type", in.BloodType), Allergies: bad.allergies("allergies", in.Allergies),
	}
	if len(bad) > 0 {
		return invalidInput(bad)
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	id, err := s.newID("patient", caller.Subject, key)
	if err != nil {
		return err
	}
	req := &messages.RegisterPatientRequest{Caller: caller, Patient: rec, IdempotencyKey: key}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PatientReply, error) {
		return g.Register(req, opts...)
	})
	if err != nil {
		return err
	}
	if reply.Replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	c.Location("/v1/patients/" + reply.Patient.Id)
	c.Set(fiber.HeaderETag, etag(reply.Patient.Version))
	return c.Status(fiber.StatusCreated).JSON(toPatientJSON(reply))
}

func (s *Server) getPatient(c *fiber.Ctx) error {
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.PatientReply, error) {
		return g.Get(&messages.GetPatientRequest{Caller: caller}, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Patient.Version))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(toPatientJSON(reply))
}

func (s *Server) updatePatient(c *fiber.Ctx) error {
	id, version, fields, err := mergePatch(c)
	if err != nil {
		return err
	}
	rec := &messages.PatientRecord{}
	mask := &fieldmaskpb.FieldMask{}
	var bad enumErrors
	for name, raw := range fields {
		var str string
		if name != "allergies" {
			if err := mergeValue(name, raw, &str); err != nil {
				return err
			}
		}
		switch name {
		case "given_name":
			rec.GivenName = str
		case "family_name":
			rec.FamilyName = str
		case "birth_date":
			rec.BirthDate = str
		case "sex":
			rec.Sex = bad.sex(name, str)
		case "phone":
			rec.Phone = str
		case "email":
			rec.Email = str
		case "blood_type":
			rec.BloodType = bad.bloodType(name, str)
		case "allergies":
			var as []allergyJSON
			if string(bytes.TrimSpace(raw)) != "null" {
				if err := decodeValue(raw, &as); err != nil { // strict: unknown allergy fields are refused
					return err
				}
			}
			rec.Allergies = bad.allergies(name, as)
		case "idnp", "id", "version", "created_at", "updated_at":
			bad = append(bad, FieldError{name, "cannot be changed"})
			continue
		default:
			return malformed("the body has a field this API does not know", FieldError{name, "is not a known field"})
		}
		mask.Paths = append(mask.Paths, name)
	}
	if len(bad) > 0 {
		return invalidInput(bad)
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.UpdatePatientRequest{Caller: caller, ExpectedVersion: version, Patient: rec, UpdateMask: mask}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PatientReply, error) {
		return g.Update(req, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Patient.Version))
	return c.JSON(toPatientJSON(reply))
}

// accessEventJSON is one entry of a patient's access log: who (their
// name, role and clinic beside the account id), with which application,
// why, what and when.
type accessEventJSON struct {
	OccurredAt       string `json:"occurred_at"`
	Subject          string `json:"subject"`
	SubjectName      string `json:"subject_name,omitempty"`
	Role             string `json:"role"`
	ClinicID         string `json:"clinic_id,omitempty"`
	ClinicName       string `json:"clinic_name,omitempty"`
	Client           string `json:"client"`
	ClientName       string `json:"client_name,omitempty"`
	PurposeOfUse     string `json:"purpose_of_use"`
	BreakGlassReason string `json:"break_glass_reason,omitempty"`
	Action           string `json:"action"`
	ResourceType     string `json:"resource_type"`
	ResourceID       string `json:"resource_id"`
	Outcome          string `json:"outcome"`
	Detail           string `json:"detail,omitempty"`
	RequestID        string `json:"request_id"`
	ClientRequestID  string `json:"client_request_id,omitempty"`
	SourceAddress    string `json:"source_address"`
}

type accessLogJSON struct {
	Events     []accessEventJSON `json:"events"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// accessLog answers GET /v1/patients/{id}/access-log?from=&to=&limit=&cursor=:
// newest first, from (inclusive) and to (exclusive) optional instants.
func (s *Server) accessLog(c *fiber.Ctx) error {
	from, err := optionalInstant(c, "from")
	if err != nil {
		return err
	}
	to, err := optionalInstant(c, "to")
	if err != nil {
		return err
	}
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.AccessLogReply, error) {
		return g.AccessLog(&messages.AccessLogRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor, From: from, To: to}, opts...)
	})
	if err != nil {
		return err
	}
	var subjects, clients []string
	for _, e := range reply.Events {
		subjects, clients = append(subjects, e.GetCaller().GetSubject()), append(clients, e.GetCaller().GetClient())
	}
	ctx := c.UserContext()
	readers := names(s, ctx, "readers", func(n Names) (map[string]persistence.Reader, error) { return n.Readers(ctx, subjects) })
	apps := names(s, ctx, "clients", func(n Names) (map[string]string, error) { return n.ClientNames(ctx, clients) })
	out := accessLogJSON{Events: make([]accessEventJSON, 0, len(reply.Events)), NextCursor: reply.NextCursor}
	for _, e := range reply.Events {
		cl := e.GetCaller()
		r := readers[cl.GetSubject()]
		out.Events = append(out.Events, accessEventJSON{
			OccurredAt: instant(e.OccurredAt.AsTime()), Subject: cl.GetSubject(), SubjectName: r.Name, Role: cl.GetRole().Name(),
			ClinicID: r.ClinicID, ClinicName: r.ClinicName, Client: cl.GetClient(), ClientName: apps[cl.GetClient()],
			PurposeOfUse: cl.GetPurposeOfUse(), BreakGlassReason: cl.GetBreakGlassReason(),
			Action: e.Action, ResourceType: e.ResourceType, ResourceID: e.ResourceId, Outcome: e.Outcome.Name(),
			Detail: e.Detail, RequestID: cl.GetRequestId(), ClientRequestID: cl.GetClientRequestId(), SourceAddress: cl.GetSourceAddress(),
		})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// optionalInstant reads an RFC 3339 query parameter; nil when absent.
func optionalInstant(c *fiber.Ctx, name string) (*timestamppb.Timestamp, error) {
	if c.Query(name) == "" {
		return nil, nil
	}
	t, err := instantParam(c, name)
	if err != nil {
		return nil, err
	}
	return timestamppb.New(t), nil
}
