package edge

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

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

// decodeStrict decodes a JSON object body into v. Before any field is
// read, the whole body is checked (checkJSON): valid UTF-8, an object at
// the top, no key twice in one object, no NUL in a string. Then unknown
// fields, wrong types and trailing data are refused, and the problem says
// where the body is wrong.
func decodeStrict(body []byte, v any) error {
	if err := checkJSON(body); err != nil {
		return err
	}
	return decodeValue(body, v)
}

// noBody refuses a body on a request that takes none, except an empty
// JSON object (what many clients send with a POST): a body that says
// something is never silently ignored.
func noBody(c *fiber.Ctx) error {
	if len(c.Body()) == 0 {
		return nil
	}
	var none struct{}
	return decodeStrict(c.Body(), &none)
}

// decodeValue decodes one JSON value (a part of a body checkJSON passed).
func decodeValue(body []byte, v any) error {
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

// checkJSON walks a body's tokens once. encoding/json would otherwise
// replace invalid UTF-8 silently, keep the last of two equal keys (so
// what was checked and what is stored could differ), and take "null" or
// an array as a body (null decodes to "nothing": a PUT of null would wipe).
func checkJSON(body []byte) error {
	if !utf8.Valid(body) {
		return malformed("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	first, err := dec.Token()
	if err != nil {
		return decodeProblem(err)
	}
	if d, ok := first.(json.Delim); !ok || d != '{' {
		return malformed("the body must be a JSON object")
	}
	// keys[i] are the keys seen in the i-th open container (nil: an array);
	// expectKey says the next string in an object is a key.
	keys := []map[string]bool{{}}
	expectKey := true
	for len(keys) > 0 {
		tok, err := dec.Token()
		if err != nil {
			return decodeProblem(err)
		}
		top := keys[len(keys)-1]
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return malformed("a string in the body contains a NUL character")
		}
		if top != nil && expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				keys = keys[:len(keys)-1]
				expectKey = len(keys) > 0 && keys[len(keys)-1] != nil
				continue
			}
			name := tok.(string) // the decoder allows only a string or '}' here
			if top[name] {
				return malformed("the body names a field twice", FieldError{name, "appears more than once"})
			}
			top[name] = true
			expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			keys = append(keys, map[string]bool{})
			expectKey = true
			continue
		case json.Delim('['):
			keys = append(keys, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			keys = keys[:len(keys)-1]
		}
		// A value ended: in an object, a key comes next.
		expectKey = len(keys) > 0 && keys[len(keys)-1] != nil
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

// mergePatch reads what every PATCH of a versioned record needs: the :id,
// the If-Match version, and a JSON merge patch (RFC 7396: the fields
// present change; null clears) as its fields.
func mergePatch(c *fiber.Ctx) (id string, version int64, fields map[string]json.RawMessage, err error) {
	if id, err = uuidParam(c); err != nil {
		return "", 0, nil, err
	}
	if err = requireJSON(c, "application/merge-patch+json"); err != nil {
		return "", 0, nil, err
	}
	if version, err = ifMatchVersion(c); err != nil {
		return "", 0, nil, err
	}
	err = decodeStrict(c.Body(), &fields)
	return id, version, fields, err
}

// patientID reads and checks the :id route parameter.
func patientID(c *fiber.Ctx) (string, error) { return uuidParam(c) }

// uuidParam reads the :id route parameter, which names a resource by UUID.
func uuidParam(c *fiber.Ctx) (string, error) { return idParam(c, "id") }

// idParam reads a route parameter that names a resource by UUID, in its
// canonical lower-case form; any other value names nothing (404).
func idParam(c *fiber.Ctx, name string) (string, error) {
	id := c.Params(name)
	if !isUUID(id) {
		return "", problem(fiber.StatusNotFound, "not-found", "Not found", "no such resource: ids in paths are UUIDs")
	}
	return normalUUID(id), nil
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
	if s.cfg.Cluster == nil { // an edge built without a cluster (the fuzz tests)
		var zero T
		return zero, &clusterError{err: errors.New("no cluster")}
	}
	g := client(s.cfg.Cluster, id)
	out, err := cluster.Call(c.UserContext(), s.cfg.Cluster, kind, id, func() (T, error) {
		return call(g, cluster.CallOptions(s.cfg.GrainTimeout)...)
	})
	return out, grainError(err)
}

func callPatient[T any](s *Server, c *fiber.Ctx, id string, call func(*messages.PatientGrainClient, ...actorcluster.GrainCallOption) (T, error)) (T, error) {
	return callGrain(s, c, "Patient", id, messages.GetPatientGrainClient, call)
}

// newID is a new resource's id. Without an Idempotency-Key it is random.
// With one, it is HMAC-SHA256 under the node's id key (IDKey, derived from
// the master key every node shares) of the kind, the caller and the key,
// as a UUID (version 8, RFC 9562's custom form): every node names a
// replay's resource alike, so the replay reaches the grain that answered
// first (which tells a replay from a reuse by the request's fingerprint),
// and nobody without the key can compute the id of another's resource.
// It costs no database round trip.
func (s *Server) newID(kind, subject, key string) (string, error) {
	if key == "" {
		return uuid.NewString(), nil
	}
	if len(s.cfg.IDKey) == 0 {
		return "", problem(fiber.StatusServiceUnavailable, "unavailable", "Idempotency keys unavailable",
			"this node keeps no idempotency keys; send the request without Idempotency-Key")
	}
	h := hmac.New(sha256.New, s.cfg.IDKey)
	return uuid.NewHash(h, uuid.Nil, []byte(kind+"\x00"+subject+"\x00"+key), 8).String(), nil
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

// patientRequest reads /v1/patients/{id}/... (the patient id and the
// caller) and asks the patient grain.
func patientRequest[R any](s *Server, c *fiber.Ctx, call func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (R, error)) (R, error) {
	var zero R
	id, err := patientID(c)
	if err != nil {
		return zero, err
	}
	caller, err := s.caller(c)
	if err != nil {
		return zero, err
	}
	return callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (R, error) {
		return call(g, caller, opts...)
	})
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

// Limits of what a request line may carry. Longer values are refused
// (414 for the path, 400 for a query parameter) before any handler runs.
const (
	maxPathBytes       = 1024
	maxQueryValueBytes = 4096 // an OpenID id_token_hint is a JWT
	maxQueryParams     = 32
)

// checkRequest is the one place where every request's path, query
// parameters and body encoding are checked, before routing: so that no
// handler, grain or SQL statement sees invalid UTF-8, a control character
// (NUL included) or an oversized value, and no body is ever decompressed.
func (s *Server) checkRequest(c *fiber.Ctx) error {
	if err := s.limitBody(c); err != nil {
		return err
	}
	if enc := c.Get(fiber.HeaderContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
		// Decoding would let a few hundred bytes become gigabytes before
		// any limit applied; no client of this API needs to compress. (The
		// body, within its limit, has been read as it is: the connection
		// stays usable.)
		return problem(fiber.StatusUnsupportedMediaType, "unsupported-content-encoding", "Unsupported content encoding",
			"send the body uncompressed (no Content-Encoding)")
	}
	uri := c.Request().URI()
	raw, path := uri.PathOriginal(), uri.Path()
	if len(raw) > maxPathBytes {
		return problem(fiber.StatusRequestURITooLong, "uri-too-long", "URI too long",
			fmt.Sprintf("the path is longer than %d bytes", maxPathBytes))
	}
	if !cleanText(path) || !cleanText(raw) {
		return malformed("the path must be UTF-8 without control characters")
	}
	var bad *Problem
	n := 0
	uri.QueryArgs().VisitAll(func(k, v []byte) {
		n++
		switch {
		case bad != nil:
		case !cleanText(k) || !cleanText(v):
			bad = malformed("query parameters must be UTF-8 without control characters",
				FieldError{safeName(k), "must be UTF-8 without control characters"})
		case len(v) > maxQueryValueBytes:
			bad = malformed(fmt.Sprintf("a query parameter is longer than %d bytes", maxQueryValueBytes),
				FieldError{safeName(k), fmt.Sprintf("must be at most %d bytes", maxQueryValueBytes)})
		}
	})
	if bad == nil && n > maxQueryParams {
		bad = malformed(fmt.Sprintf("a request has at most %d query parameters", maxQueryParams))
	}
	if bad != nil {
		return bad
	}
	return c.Next()
}

// cleanText reports whether b is UTF-8 with no control character.
func cleanText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// CleanString reports whether s is UTF-8 without control characters other
// than tab and line breaks: what a stored text field may hold.
func CleanString(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f })
}

// safeName is a query parameter's name fit to echo in a problem.
func safeName(k []byte) string {
	if !cleanText(k) || len(k) > 64 {
		return "(query)"
	}
	return string(k)
}

// limitBody holds every body to its route's limit before anything reads
// it: MaxBodyBytes, or for a document upload whose Authorization proves a
// role that may upload, the upload limit (the handler then streams it).
// A Content-Length over the limit is refused before a byte of the body is
// read; a chunked body is read up to the limit and refused past it. In
// both cases the connection is closed after the answer (what is left of
// the body is never read).
func (s *Server) limitBody(c *fiber.Ctx) error {
	limit, upload := int64(MaxBodyBytes), s.isUpload(c)
	if upload {
		limit = s.uploadLimit()
	}
	tooLarge := func() error {
		c.Context().SetConnectionClose()
		return problem(fiber.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
			fmt.Sprintf("the body exceeds this endpoint's limit of %d bytes", limit))
	}
	if int64(c.Request().Header.ContentLength()) > limit {
		return tooLarge()
	}
	switch {
	case upload:
		// The handler reads the stream, capped. Whatever answers first (a
		// check before the handler, a refusal in it), the rest of the body
		// may stay unread: the connection is not reused.
		c.Context().SetConnectionClose()
		return nil
	case c.Request().IsBodyStream():
		b, err := io.ReadAll(io.LimitReader(c.Request().BodyStream(), limit+1))
		if err != nil {
			c.Context().SetConnectionClose()
			return malformed("the body could not be read")
		}
		if int64(len(b)) > limit {
			return tooLarge()
		}
		c.Request().SetBody(b) // ends the stream: handlers read the body as usual
	case int64(len(c.Request().Body())) > limit:
		return tooLarge()
	}
	return nil
}

var documentsPath = regexp.MustCompile(`^/v1/patients/[^/]+/documents$`)

// isUpload reports whether a request is a document upload by a caller
// whose token proves a role that may upload.
func (s *Server) isUpload(c *fiber.Ctx) bool {
	return s.cfg.Documents != nil && c.Method() == fiber.MethodPost &&
		documentsPath.MatchString(string(c.Request().URI().Path())) && s.mayUpload(c.Get(fiber.HeaderAuthorization))
}
