package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
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

// requireJSON refuses a body that is not JSON (415).
func requireJSON(c *fiber.Ctx, types ...string) error {
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err == nil {
		for _, t := range append(types, fiber.MIMEApplicationJSON) {
			if mt == t {
				return nil
			}
		}
	}
	return problem(fiber.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
		"send the body as "+strings.Join(append(types, fiber.MIMEApplicationJSON), " or "))
}

// decodeStrict decodes one JSON value into v, refusing unknown fields,
// wrong types and trailing data, and says where the body is wrong.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed("the body has data after its JSON value")
	}
	return nil
}

func decodeProblem(err error) *Problem {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return malformed("the body is empty; send a JSON object")
	case errors.As(err, &syntax):
		return malformed(fmt.Sprintf("the body is not valid JSON (at byte %d)", syntax.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return malformed("a field has the wrong JSON type", FieldError{field, "must be a JSON " + jsonKind(typ.Type.Kind().String())})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return malformed("the body has a field this API does not know", FieldError{name, "is not a known field"})
	}
	return malformed("the body is not valid JSON")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	}
	return "number"
}

// mergeValue reads one field of a JSON merge patch into v: null leaves v
// at its zero value (the field is cleared), anything else must have v's type.
func mergeValue(name string, raw json.RawMessage, v any) error {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return malformed("a field has the wrong JSON type", FieldError{name, "has the wrong JSON type"})
	}
	return nil
}

// patientID reads and checks the :id route parameter.
func patientID(c *fiber.Ctx) (string, error) { return uuidParam(c, "patient") }

// uuidParam reads the :id route parameter, which names a resource by UUID.
func uuidParam(c *fiber.Ctx, what string) (string, error) {
	id := c.Params("id")
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return "", problem(fiber.StatusNotFound, "not-found", "Not found", what+" ids are UUIDs")
	}
	return strings.ToLower(id), nil
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// normalUUID is the canonical (lower-case) form of a checked UUID.
func normalUUID(s string) string { return strings.ToLower(s) }

// callGrain sends one request to grain id of a kind with fresh call
// options, following a fenced activation to its successor, and marks a
// failure to deliver as retryable.
func callGrain[G, T any](s *Server, c *fiber.Ctx, kind, id string, client func(*actorcluster.Cluster, string) G,
	call func(G, ...actorcluster.GrainCallOption) (T, error)) (T, error) {
	g := client(s.cfg.Cluster, id)
	out, err := cluster.Call(c.UserContext(), s.cfg.Cluster, kind, id, func() (T, error) {
		return call(g, cluster.CallOptions(s.cfg.GrainTimeout)...)
	})
	return out, grainError(err)
}

func callPatient[T any](s *Server, c *fiber.Ctx, id string, call func(*messages.PatientGrainClient, ...actorcluster.GrainCallOption) (T, error)) (T, error) {
	return callGrain(s, c, "Patient", id, messages.GetPatientGrainClient, call)
}

// idempotencyNamespace scopes patient ids derived from idempotency keys.
var idempotencyNamespace = uuid.MustParse("6f2b1c52-52a4-4d8e-9a55-0e4a7c1d9b10")

// newPatientID is the new patient's grain identity. With an Idempotency-Key
// it is derived from the caller and the key, so a replay reaches the same
// grain, which answers it from the first registration.
func newPatientID(subject, key string) string { return newID("patient", subject, key) }

// newID is a new resource's id: random, or derived from the caller and the
// Idempotency-Key so that a replay reaches the grain that answered first.
func newID(kind, subject, key string) string {
	if key == "" {
		return uuid.NewString()
	}
	return uuid.NewSHA1(idempotencyNamespace, []byte(kind+"\x00"+subject+"\x00"+key)).String()
}

// idempotencyKey reads and checks the Idempotency-Key header.
func idempotencyKey(c *fiber.Ctx) (string, error) {
	key := c.Get("Idempotency-Key")
	if len(key) > idempotencyKeyMax || strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return "", malformed("Idempotency-Key must be 1 to 255 visible ASCII characters",
			FieldError{"Idempotency-Key", "must be 1 to 255 visible ASCII characters"})
	}
	return key, nil
}

var idempotencyKeyMax = 255

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
	id := newPatientID(caller.Subject, key)
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
	id, err := patientID(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.GetPatientRequest{Caller: caller}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.PatientReply, error) {
		return g.Get(req, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag(reply.Patient.Version))
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(toPatientJSON(reply))
}

// ifMatchVersion reads the version from a strong If-Match entity tag.
func ifMatchVersion(c *fiber.Ctx) (int64, error) {
	h := strings.TrimSpace(c.Get(fiber.HeaderIfMatch))
	if h == "" {
		return 0, problem(fiber.StatusPreconditionRequired, "precondition-required", "Precondition required",
			"send If-Match with the ETag of the version you are changing")
	}
	v, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || v < 1 || !strings.HasPrefix(h, `"`) || !strings.HasSuffix(h, `"`) {
		return 0, malformed(`If-Match must be one ETag this API returned, such as "3"`,
			FieldError{"If-Match", "must be a strong entity tag such as \"3\""})
	}
	return v, nil
}

func (s *Server) updatePatient(c *fiber.Ctx) error {
	id, err := patientID(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c, "application/merge-patch+json"); err != nil {
		return err
	}
	version, err := ifMatchVersion(c)
	if err != nil {
		return err
	}
	// A JSON merge patch (RFC 7396): the fields present change; null clears.
	var fields map[string]json.RawMessage
	if err := decodeStrict(c.Body(), &fields); err != nil {
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
				if err := decodeStrict(raw, &as); err != nil { // strict: unknown allergy fields are refused
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

// accessEventJSON is one entry of a patient's access log.
type accessEventJSON struct {
	OccurredAt       string `json:"occurred_at"`
	Subject          string `json:"subject"`
	Role             string `json:"role"`
	Client           string `json:"client"`
	PurposeOfUse     string `json:"purpose_of_use"`
	BreakGlassReason string `json:"break_glass_reason,omitempty"`
	Action           string `json:"action"`
	ResourceType     string `json:"resource_type"`
	ResourceID       string `json:"resource_id"`
	Outcome          string `json:"outcome"`
	Detail           string `json:"detail,omitempty"`
	RequestID        string `json:"request_id"`
	SourceAddress    string `json:"source_address"`
}

type accessLogJSON struct {
	Events     []accessEventJSON `json:"events"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// pageLimit reads ?limit= (default 50, 1 to 500).
func pageLimit(c *fiber.Ctx) (int32, error) {
	raw := c.Query("limit")
	if raw == "" {
		return patient.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > patient.MaxPageSize {
		return 0, malformed(fmt.Sprintf("limit must be a whole number from 1 to %d", patient.MaxPageSize),
			FieldError{"limit", fmt.Sprintf("must be 1 to %d", patient.MaxPageSize)})
	}
	return int32(n), nil
}

func (s *Server) accessLog(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.AccessLogReply, error) {
		return g.AccessLog(&messages.AccessLogRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	out := accessLogJSON{Events: make([]accessEventJSON, 0, len(reply.Events)), NextCursor: reply.NextCursor}
	for _, e := range reply.Events {
		cl := e.GetCaller()
		out.Events = append(out.Events, accessEventJSON{
			OccurredAt: instant(e.OccurredAt.AsTime()), Subject: cl.GetSubject(), Role: cl.GetRole().Name(),
			Client: cl.GetClient(), PurposeOfUse: cl.GetPurposeOfUse(), BreakGlassReason: cl.GetBreakGlassReason(),
			Action: e.Action, ResourceType: e.ResourceType, ResourceID: e.ResourceId, Outcome: e.Outcome.Name(),
			Detail: e.Detail, RequestID: cl.GetRequestId(), SourceAddress: cl.GetSourceAddress(),
		})
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}
