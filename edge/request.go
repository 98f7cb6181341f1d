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

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// The request helpers every handler uses, so that every handler reads the
// same way: check the media type, decode strictly, read ids and headers,
// call the grain, answer.

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

// page is what a paged list request carries to the patient grain.
type page struct {
	caller *messages.Caller
	limit  int32
	cursor string
}

// patientPage reads a paged list request on /v1/patients/{id}/... (the
// patient id, ?limit=, ?cursor=, the caller) and asks the patient grain.
func patientPage[R any](s *Server, c *fiber.Ctx, call func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (R, error)) (R, error) {
	var zero R
	id, err := patientID(c)
	if err != nil {
		return zero, err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return zero, err
	}
	caller, err := s.caller(c)
	if err != nil {
		return zero, err
	}
	p := page{caller: caller, limit: limit, cursor: c.Query("cursor")}
	return callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (R, error) {
		return call(g, p, opts...)
	})
}

// created answers 201 with the new resource at location; replayed marks
// an Idempotency-Key replay.
func created(c *fiber.Ctx, location string, replayed bool, body any) error {
	if replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	c.Location(location)
	return c.Status(fiber.StatusCreated).JSON(body)
}
