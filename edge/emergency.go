package edge

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// Reviews is the review queue of emergency accesses (persistence.DB).
type Reviews interface {
	EmergencyReviews(ctx context.Context, review string, after time.Time, afterID string, limit int) ([]persistence.EmergencyAccess, error)
	ReviewEmergencyAccess(ctx context.Context, id, decision, by, note string, at time.Time, audited func(persistence.EmergencyAccess) persistence.PendingAudit) (persistence.EmergencyAccess, error)
}

// Review queue limits.
const (
	defaultReviewLimit = 50
	maxReviewLimit     = 200
	maxReviewNoteRunes = 1000
)

// emergencyAccess answers POST /v1/patients/{id}/emergency-access {reason}:
// a doctor breaks the glass (the patient grain decides, records and audits).
func (s *Server) emergencyAccess(c *fiber.Ctx) error {
	if _, err := patientID(c); err != nil {
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
	req := &messages.EmergencyAccessRequest{AccessId: uuid.NewString(), Reason: strings.TrimSpace(in.Reason)}
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.EmergencyAccessReply, error) {
		req.Caller = caller
		return g.EmergencyAccess(req, opts...)
	})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"id": reply.Id, "expires_at": instant(reply.ExpiresAt.AsTime())})
}

// reviewJSON is one emergency access as the review queue shows it.
type reviewJSON struct {
	ID          string `json:"id"`
	PatientID   string `json:"patient_id"`
	PatientName string `json:"patient_name,omitempty"`
	DoctorID    string `json:"doctor_id"`
	DoctorName  string `json:"doctor_name,omitempty"`
	Reason      string `json:"reason"`
	GrantedAt   string `json:"granted_at"`
	ExpiresAt   string `json:"expires_at"`
	Review      string `json:"review"`
	ReviewedBy  string `json:"reviewed_by,omitempty"`
	ReviewedAt  string `json:"reviewed_at,omitempty"`
	ReviewNote  string `json:"review_note,omitempty"`
}

func (s *Server) reviewsJSON(ctx context.Context, es []persistence.EmergencyAccess) []reviewJSON {
	var patients, doctors []string
	for _, e := range es {
		patients, doctors = append(patients, e.PatientID), append(doctors, e.DoctorID)
	}
	pn := names(s, ctx, "patients", func(n Names) (map[string]string, error) { return n.PatientNames(ctx, patients) })
	dn := names(s, ctx, "doctors", func(n Names) (map[string]string, error) { return n.DoctorNames(ctx, doctors) })
	out := make([]reviewJSON, 0, len(es))
	for _, e := range es {
		j := reviewJSON{ID: e.ID, PatientID: e.PatientID, PatientName: pn[e.PatientID], DoctorID: e.DoctorID, DoctorName: dn[e.DoctorID],
			Reason: e.Reason, GrantedAt: instant(e.GrantedAt), ExpiresAt: instant(e.ExpiresAt), Review: e.Review,
			ReviewedBy: e.ReviewedBy, ReviewNote: e.ReviewNote}
		if !e.ReviewedAt.IsZero() {
			j.ReviewedAt = instant(e.ReviewedAt)
		}
		out = append(out, j)
	}
	return out
}

// listReviews answers GET /v1/reviews?status=&limit=&cursor=: the
// emergency accesses, oldest first, pending by default (admins).
func (s *Server) listReviews(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.ReviewEmergencyAccess(caller); !d.Allowed {
		return forbidden(d.Reason)
	}
	q, err := reviewQuery(c, persistence.ReviewPending, []string{persistence.ReviewPending, persistence.ReviewApproved, persistence.ReviewFlagged},
		FieldError{"status", "must be pending, approved, flagged or all"})
	if err != nil {
		return err
	}
	status, limit, after, afterID := q.status, q.limit, q.after, q.afterID
	if s.cfg.Reviews == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no review queue")
	}
	es, err := s.cfg.Reviews.EmergencyReviews(c.UserContext(), status, after, afterID, limit+1)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		Reviews    []reviewJSON `json:"reviews"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{}
	if len(es) > limit {
		es = es[:limit]
		last := es[len(es)-1]
		out.NextCursor = reviewCursorOf(last.GrantedAt, last.ID)
	}
	out.Reviews = s.reviewsJSON(c.UserContext(), es)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// reviewPage is a review queue's query: the state asked for ("" all), the
// page size, and the keyset after which the page starts.
type reviewPage struct {
	status, afterID string
	limit           int
	after           time.Time
}

// reviewQuery reads ?status= (one of states or all; def when absent, else
// badStatus), ?limit= and ?cursor= of a review queue.
func reviewQuery(c *fiber.Ctx, def string, states []string, badStatus FieldError) (reviewPage, error) {
	q := reviewPage{status: c.Query("status", def), limit: defaultReviewLimit}
	var bad []FieldError
	if q.status != "all" && !slices.Contains(states, q.status) {
		bad = append(bad, badStatus)
	}
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxReviewLimit {
			bad = append(bad, FieldError{"limit", "must be 1 to 200"})
		}
		q.limit = n
	}
	var ok bool
	if q.after, q.afterID, ok = reviewCursor(c.Query("cursor")); !ok {
		bad = append(bad, FieldError{"cursor", "must be a next_cursor from a previous page"})
	}
	if len(bad) > 0 {
		return q, malformed("the query is not valid; see errors", bad...)
	}
	if q.status == "all" {
		q.status = ""
	}
	return q, nil
}

// reviewDecision reads a review's {decision, note}: decisions maps what a
// reviewer may send to the state it makes (else badDecision), and the
// state needsNote takes a note (else noNote).
func reviewDecision(c *fiber.Ctx, decisions map[string]string, badDecision FieldError, needsNote string, noNote FieldError) (string, string, error) {
	if err := requireJSON(c); err != nil {
		return "", "", err
	}
	var in struct {
		Decision string `json:"decision"`
		Note     string `json:"note"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return "", "", err
	}
	decision := decisions[in.Decision]
	var bad []FieldError
	if decision == "" {
		bad = append(bad, badDecision)
	}
	note := strings.TrimSpace(in.Note)
	if utf8.RuneCountInString(note) > maxReviewNoteRunes || strings.ContainsFunc(note, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) {
		bad = append(bad, FieldError{"note", "must be at most 1000 characters, without control characters"})
	}
	if decision == needsNote && note == "" {
		bad = append(bad, noNote)
	}
	if len(bad) > 0 {
		return "", "", invalidInput(bad)
	}
	return decision, note, nil
}

// reviewEmergencyAccess answers POST /v1/reviews/{id} {decision, note}: a
// privacy officer approves or flags an emergency access (admins). The
// decision is in the patient's access log.
func (s *Server) reviewEmergencyAccess(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.ReviewEmergencyAccess(caller); !d.Allowed {
		return forbidden(d.Reason)
	}
	decision, note, err := reviewDecision(c, map[string]string{"approve": persistence.ReviewApproved, "flag": persistence.ReviewFlagged},
		FieldError{"decision", "must be approve or flag"}, persistence.ReviewFlagged, FieldError{"note", "a flag needs a note saying what is wrong"})
	if err != nil {
		return err
	}
	if s.cfg.Reviews == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no review queue")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	// The patient sees the review beside the access it judged; its audit
	// row is written with it.
	e, err := s.cfg.Reviews.ReviewEmergencyAccess(ctx, id, decision, caller.GetSubject(), note, time.Now().UTC(),
		func(e persistence.EmergencyAccess) persistence.PendingAudit {
			return s.cfg.Audit.Pending(audit.Event(caller, messages.AuditAction_AUDIT_ACTION_REVIEW_EMERGENCY_ACCESS, "emergency-access",
				e.ID, e.PatientID, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, decision, time.Now()))
		})
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such emergency access")
	case errors.Is(err, persistence.ErrReviewed):
		return problem(fiber.StatusConflict, "wrong-state", "Not allowed in the current state", "this emergency access was reviewed already")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	s.cfg.Audit.Drain(s.cfg.Logger)
	return c.JSON(s.reviewsJSON(ctx, []persistence.EmergencyAccess{e})[0])
}

// AuditKeyList publishes the audit signing keys' public halves
// (persistence.DB).
type AuditKeyList interface {
	AuditKeys(ctx context.Context) ([]persistence.AuditKey, error)
}

// auditKeys answers GET /.well-known/caregrid-audit-keys: the public keys
// that sign the audit chains' checkpoints, for anyone to keep outside the
// database and check `caregrid audit verify` against.
func (s *Server) auditKeys(c *fiber.Ctx) error {
	if s.cfg.AuditKeys == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node publishes no audit keys")
	}
	ks, err := s.cfg.AuditKeys.AuditKeys(c.UserContext())
	if err != nil {
		return directoryUnavailable(s, err)
	}
	type keyJSON struct {
		ID        string `json:"id"`
		Algorithm string `json:"alg"`
		PublicKey string `json:"public_key"`
		CreatedAt string `json:"created_at"`
		RetiredAt string `json:"retired_at,omitempty"`
	}
	out := struct {
		Keys []keyJSON `json:"keys"`
	}{Keys: make([]keyJSON, 0, len(ks))}
	for _, k := range ks {
		j := keyJSON{ID: k.ID, Algorithm: "Ed25519", PublicKey: base64.StdEncoding.EncodeToString(k.Public), CreatedAt: instant(k.CreatedAt)}
		if !k.RetiredAt.IsZero() {
			j.RetiredAt = instant(k.RetiredAt)
		}
		out.Keys = append(out.Keys, j)
	}
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	return c.JSON(out)
}
