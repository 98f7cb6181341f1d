package edge

import (
	"errors"
	"sort"
	"strings"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
)

// Problem is an RFC 9457 problem detail. Type is a stable name under
// /problems/; Detail never carries personal data.
type Problem struct {
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Status     int          `json:"status"`
	Detail     string       `json:"detail,omitempty"`
	Errors     []FieldError `json:"errors,omitempty"`
	ExistingID string       `json:"existing_id,omitempty"`
	// Warnings are a refused prescription's interactions and allergies.
	Warnings []warningJSON `json:"warnings,omitempty"`
	// retryAfter, when set, is sent as Retry-After (seconds).
	retryAfter string
}

// FieldError names one offending field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, name, title, detail string) *Problem {
	return &Problem{Type: "/problems/" + name, Title: title, Status: status, Detail: detail}
}

// Problems the edge raises itself.
func malformed(detail string, fields ...FieldError) *Problem {
	p := problem(fiber.StatusBadRequest, "malformed-request", "Malformed request", detail)
	p.Errors = fields
	return p
}

func invalidInput(fields []FieldError) *Problem {
	p := problem(fiber.StatusUnprocessableEntity, "validation", "Validation failed", "the request has invalid fields; see errors")
	p.Errors = fields
	return p
}

func unauthenticated(detail string) *Problem {
	return problem(fiber.StatusUnauthorized, "unauthenticated", "Authentication required", detail)
}

func forbidden(detail string) *Problem {
	return problem(fiber.StatusForbidden, "forbidden", "Forbidden", detail)
}

// grainProblems maps each grain ErrorReason to its HTTP problem; the one
// place where domain errors become statuses.
var grainProblems = map[string]struct {
	status      int
	name, title string
}{
	messages.ErrorReason_INVALID_ARGUMENT.String():       {422, "validation", "Validation failed"},
	messages.ErrorReason_NOT_FOUND.String():              {404, "not-found", "Not found"},
	messages.ErrorReason_ALREADY_EXISTS.String():         {409, "already-exists", "Already exists"},
	messages.ErrorReason_PERMISSION_DENIED.String():      {403, "forbidden", "Forbidden"},
	messages.ErrorReason_VERSION_MISMATCH.String():       {412, "version-mismatch", "Version mismatch"},
	messages.ErrorReason_FENCED.String():                 {503, "unavailable", "Temporarily unavailable"},
	messages.ErrorReason_AUDIT_UNAVAILABLE.String():      {503, "audit-unavailable", "Audit trail unavailable"},
	messages.ErrorReason_STORE_UNAVAILABLE.String():      {503, "store-unavailable", "Database unavailable"},
	messages.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(): {422, "idempotency-key-reused", "Idempotency key reused"},
	messages.ErrorReason_SLOT_TAKEN.String():             {409, "slot-taken", "Slot taken"},
	messages.ErrorReason_PATIENT_OVERLAP.String():        {409, "patient-overlap", "Patient already booked then"},
	messages.ErrorReason_UNBOOKABLE.String():             {422, "unbookable", "Time cannot be booked"},
	messages.ErrorReason_WRONG_STATE.String():            {409, "wrong-state", "Not allowed in the current state"},
	messages.ErrorReason_INTERACTION.String():            {409, "interaction", "Interaction or allergy warnings"},
	messages.ErrorReason_UNPROVEN.String():               {401, "unauthenticated", "Authentication required"},
}

// toProblem maps any error a handler returns to a problem.
func toProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			return problem(fe.Code, "body-too-large", "Request body too large", "the body exceeds the limit of this endpoint")
		case fiber.StatusNotFound:
			return problem(fe.Code, "not-found", "Not found", "no such route")
		case fiber.StatusMethodNotAllowed:
			return problem(fe.Code, "method-not-allowed", "Method not allowed", "this route does not accept the method")
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return problem(fe.Code, "bad-request", "Bad request", fe.Message)
		}
		return problem(fiber.StatusInternalServerError, "internal", "Internal error", "")
	}
	var ge *actorcluster.GrainErrorResponse
	if errors.As(err, &ge) {
		if m, ok := grainProblems[ge.Reason]; ok {
			p := problem(m.status, m.name, m.title, ge.Message)
			if ge.Reason == messages.ErrorReason_INVALID_ARGUMENT.String() {
				p.Errors = fieldErrors(ge.Metadata)
			}
			if ge.Reason == messages.ErrorReason_INTERACTION.String() {
				p.Warnings = interactionWarnings(ge.Metadata)
			}
			if ge.Reason == messages.ErrorReason_ALREADY_EXISTS.String() {
				p.ExistingID = ge.Metadata["id"]
			}
			if m.status == fiber.StatusServiceUnavailable {
				p.retryAfter = "1"
			}
			return p
		}
	}
	var ce *clusterError
	if errors.As(err, &ce) {
		p := problem(fiber.StatusServiceUnavailable, "cluster-unavailable", "Cluster unavailable", "the request could not reach its grain in time")
		p.retryAfter = "1"
		return p
	}
	return problem(fiber.StatusInternalServerError, "internal", "Internal error", "")
}

// clusterError is a grain request the cluster could not deliver or answer
// in time (no member, timeout): retryable, unlike a bug.
type clusterError struct{ err error }

func (e *clusterError) Error() string { return "cluster: " + e.err.Error() }
func (e *clusterError) Unwrap() error { return e.err }

// grainError keeps a grain's typed reply as it is and marks anything else
// as a delivery failure.
func grainError(err error) error {
	var ge *actorcluster.GrainErrorResponse
	if err == nil || errors.As(err, &ge) {
		return err
	}
	return &clusterError{err: err}
}

func fieldErrors(md map[string]string) []FieldError {
	var out []FieldError
	for k, v := range md {
		if f, ok := strings.CutPrefix(k, "field:"); ok {
			out = append(out, FieldError{Field: f, Message: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}
