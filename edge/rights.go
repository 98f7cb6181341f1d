package edge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// The data-subject rights (GDPR art. 15, 17, 20): a copy of the record
// (exports), erasure (its request, a privacy officer's review, and the
// retention sweep that carries it out), and the legal holds that stop it.

// Erasures is the erasure review queue (persistence.DB).
type Erasures interface {
	ErasureRequests(ctx context.Context, state string, after time.Time, afterID string, limit int) ([]persistence.Erasure, error)
	ReviewErasure(ctx context.Context, id, decision, by, note string, at time.Time, audited func(persistence.Erasure) persistence.PendingAudit) (persistence.Erasure, error)
}

// Exports serves export downloads: the rows (persistence.DB) and the key
// each archive is sealed with (opened with the master key).
type Exports interface {
	GetExport(ctx context.Context, id string) (persistence.Export, error)
	TakeExportDownload(ctx context.Context, id string, tokenHash []byte, now time.Time) (persistence.Export, error)
	ExportKey(e persistence.Export) ([]byte, error)
}

// dataRights: the patient, and receptionists for them (the grain decides).
var dataRights = []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_RECEPTIONIST}

type erasureJSON struct {
	ID          string          `json:"id"`
	PatientID   string          `json:"patient_id"`
	PatientName string          `json:"patient_name,omitempty"`
	State       string          `json:"state"`
	RequestedBy string          `json:"requested_by"`
	RequestedAt string          `json:"requested_at"`
	ReviewedBy  string          `json:"reviewed_by,omitempty"`
	ReviewedAt  string          `json:"reviewed_at,omitempty"`
	ReviewNote  string          `json:"review_note,omitempty"`
	BlockedBy   string          `json:"blocked_by,omitempty"`
	RetainUntil string          `json:"retain_until,omitempty"`
	ErasedAt    string          `json:"erased_at,omitempty"`
	Proof       json.RawMessage `json:"proof,omitempty"`
}

func erasureFromMessage(e *messages.Erasure) erasureJSON {
	j := erasureJSON{ID: e.Id, PatientID: e.PatientId, State: e.State, RequestedBy: e.RequestedBy, RequestedAt: instant(e.RequestedAt.AsTime()),
		ReviewedBy: e.ReviewedBy, ReviewNote: e.ReviewNote, BlockedBy: e.BlockedBy}
	if e.ReviewedAt != nil {
		j.ReviewedAt = instant(e.ReviewedAt.AsTime())
	}
	if e.RetainUntil != nil {
		j.RetainUntil = instant(e.RetainUntil.AsTime())
	}
	if e.ErasedAt != nil {
		j.ErasedAt = instant(e.ErasedAt.AsTime())
	}
	if e.ProofJson != "" {
		j.Proof = json.RawMessage(e.ProofJson)
	}
	return j
}

// requestErasure answers POST /v1/patients/{id}/erasure-requests: 201 with
// the new request, 200 with the one already open.
func (s *Server) requestErasure(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	id := uuid.NewString()
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.ErasureReply, error) {
		return g.RequestErasure(&messages.RequestErasureRequest{Caller: caller, ErasureId: id}, opts...)
	})
	if err != nil {
		return err
	}
	body := erasureFromMessage(reply.Erasure)
	if reply.Erasure.Id != id {
		return c.JSON(body) // one was open already
	}
	return created(c, "/v1/patients/"+body.PatientID+"/erasure-requests/latest", false, body)
}

// latestErasure answers GET /v1/patients/{id}/erasure-requests/latest.
func (s *Server) latestErasure(c *fiber.Ctx) error {
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.ErasureReply, error) {
		return g.Erasure(&messages.GetErasureRequest{Caller: caller}, opts...)
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(erasureFromMessage(reply.Erasure))
}

func erasureFromRow(e persistence.Erasure, name string) erasureJSON {
	j := erasureFromMessage(patient.ErasureOf(e))
	j.PatientName = name
	return j
}

// listErasures answers GET /v1/erasure-requests?status=&limit=&cursor=:
// the erasure requests, oldest first, pending by default (admins).
func (s *Server) listErasures(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.ReviewErasure(caller); !d.Allowed {
		return forbidden(d.Reason)
	}
	q, err := reviewQuery(c, persistence.ErasurePending,
		[]string{persistence.ErasurePending, persistence.ErasureApproved, persistence.ErasureRefused, persistence.ErasureErased},
		FieldError{"status", "must be pending, approved, refused, erased or all"})
	if err != nil {
		return err
	}
	status, limit, after, afterID := q.status, q.limit, q.after, q.afterID
	if s.cfg.Erasures == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no review queue")
	}
	es, err := s.cfg.Erasures.ErasureRequests(c.UserContext(), status, after, afterID, limit+1)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		ErasureRequests []erasureJSON `json:"erasure_requests"`
		NextCursor      string        `json:"next_cursor,omitempty"`
	}{ErasureRequests: make([]erasureJSON, 0, len(es))}
	if len(es) > limit {
		es = es[:limit]
		last := es[len(es)-1]
		out.NextCursor = reviewCursorOf(last.RequestedAt, last.ID)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.PatientID)
	}
	ctx := c.UserContext()
	pn := names(s, ctx, "patients", func(n Names) (map[string]string, error) { return n.PatientNames(ctx, ids) })
	for _, e := range es {
		out.ErasureRequests = append(out.ErasureRequests, erasureFromRow(e, pn[e.PatientID]))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// reviewCursorOf is the cursor of a review queue's page after the row at
// (at, id).
func reviewCursorOf(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d,%s", at.UnixMicro(), id))
}

// reviewCursor reads a review queue's cursor ("": from the start).
func reviewCursor(raw string) (time.Time, string, bool) {
	if raw == "" {
		return time.Time{}, "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	micros, id, ok := strings.Cut(string(b), ",")
	n, aerr := strconv.ParseInt(micros, 10, 64)
	if err != nil || !ok || aerr != nil || !isUUID(id) {
		return time.Time{}, "", false
	}
	return time.UnixMicro(n).UTC(), normalUUID(id), true
}

// reviewErasure answers POST /v1/erasure-requests/{id} {decision, note}: a
// privacy officer approves or refuses an erasure (admins). An approved one
// is carried out by the retention sweep once nothing stands in its way.
func (s *Server) reviewErasure(c *fiber.Ctx) error {
	id, err := uuidParam(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.ReviewErasure(caller); !d.Allowed {
		return forbidden(d.Reason)
	}
	decision, note, err := reviewDecision(c, map[string]string{"approve": persistence.ErasureApproved, "refuse": persistence.ErasureRefused},
		FieldError{"decision", "must be approve or refuse"}, persistence.ErasureRefused,
		FieldError{"note", "a refusal needs a note saying why (the patient is told)"})
	if err != nil {
		return err
	}
	if s.cfg.Erasures == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node has no review queue")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	e, err := s.cfg.Erasures.ReviewErasure(ctx, id, decision, caller.GetSubject(), note, time.Now().UTC(),
		func(e persistence.Erasure) persistence.PendingAudit {
			return s.cfg.Audit.Pending(audit.Event(caller, messages.AuditAction_AUDIT_ACTION_REVIEW_ERASURE, "erasure",
				e.ID, e.PatientID, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, decision, time.Now()))
		})
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such erasure request")
	case errors.Is(err, persistence.ErrReviewed):
		return problem(fiber.StatusConflict, "wrong-state", "Not allowed in the current state", "this erasure request was reviewed already")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	s.cfg.Audit.Drain(s.cfg.Logger)
	return c.JSON(erasureFromRow(e, ""))
}

// placeLegalHold answers PUT /v1/patients/{id}/legal-hold {reason} (admins).
func (s *Server) placeLegalHold(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := decodeStrict(c.Body(), &in); err != nil {
		return err
	}
	return s.legalHold(c, true, in.Reason)
}

// liftLegalHold answers DELETE /v1/patients/{id}/legal-hold (admins).
func (s *Server) liftLegalHold(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	return s.legalHold(c, false, "")
}

func (s *Server) legalHold(c *fiber.Ctx, hold bool, reason string) error {
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.LegalHoldReply, error) {
		return g.SetLegalHold(&messages.SetLegalHoldRequest{Caller: caller, Hold: hold, Reason: reason}, opts...)
	})
	if err != nil {
		return err
	}
	if !reply.Held {
		return c.SendStatus(fiber.StatusNoContent)
	}
	return c.JSON(fiber.Map{"held": true, "reason": reply.Reason, "placed_by": reply.PlacedBy, "placed_at": instant(reply.PlacedAt.AsTime())})
}

type exportJSON struct {
	ID              string `json:"id"`
	PatientID       string `json:"patient_id"`
	State           string `json:"state"`
	ProgressPercent int    `json:"progress_percent"`
	RequestedBy     string `json:"requested_by"`
	RequestedAt     string `json:"requested_at"`
	ExpiresAt       string `json:"expires_at"`
	// DownloadURL is in the answer that starts the export only: the
	// token in it is kept nowhere but as its hash.
	DownloadURL string `json:"download_url,omitempty"`
}

// startExport answers POST /v1/patients/{id}/exports {language}: 202 with
// the export and its single-use download link, which works once the export
// is ready and until it expires.
func (s *Server) startExport(c *fiber.Ctx) error {
	var in struct {
		Language string `json:"language"`
	}
	if len(c.Body()) > 0 {
		if err := requireJSON(c); err != nil {
			return err
		}
		if err := decodeStrict(c.Body(), &in); err != nil {
			return err
		}
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	tokenText := base64.RawURLEncoding.EncodeToString(token)
	sum := sha256.Sum256([]byte(tokenText))
	req := &messages.StartExportRequest{ExportId: uuid.NewString(), Language: in.Language, TokenSha256: sum[:]}
	reply, err := patientRequest(s, c, func(g *messages.PatientGrainClient, caller *messages.Caller, opts ...actorcluster.GrainCallOption) (*messages.ExportReply, error) {
		req.Caller = caller
		return g.StartExport(req, opts...)
	})
	if err != nil {
		return err
	}
	body := exportFromMessage(reply.Export)
	body.DownloadURL = "/v1/exports/" + body.ID + "/download?token=" + tokenText
	c.Location("/v1/patients/" + body.PatientID + "/exports/" + body.ID)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(fiber.StatusAccepted).JSON(body)
}

func exportFromMessage(e *messages.Export) exportJSON {
	return exportJSON{ID: e.Id, PatientID: e.PatientId, State: e.State, ProgressPercent: int(e.ProgressPercent), RequestedBy: e.RequestedBy,
		RequestedAt: instant(e.RequestedAt.AsTime()), ExpiresAt: instant(e.ExpiresAt.AsTime())}
}

// getExport answers GET /v1/patients/{id}/exports/{export}: its progress,
// for the patient and whoever asked for it.
func (s *Server) getExport(c *fiber.Ctx) error {
	id, err := patientID(c)
	if err != nil {
		return err
	}
	eid, err := idParam(c, "export")
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.ExerciseDataRights(caller, id); !d.Allowed {
		return forbidden(d.Reason)
	}
	if s.cfg.Exports == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node makes no exports")
	}
	e, err := s.cfg.Exports.GetExport(c.UserContext(), eid)
	switch {
	case errors.Is(err, persistence.ErrNotFound) || err == nil && e.PatientID != id:
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such export")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	if caller.GetSubject() != e.RequestedBy && !(caller.GetRole() == messages.Role_ROLE_PATIENT && caller.GetSubject() == e.PatientID) {
		return forbidden("only the patient and whoever asked for an export see it")
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(exportFromMessage(patient.ExportOf(e)))
}

// downloadExport answers GET /v1/exports/{export}/download?token=: the
// ZIP, once. The link is the credential (a browser follows it without the
// API's bearer token): its token is 256 random bits, kept as a hash, spent
// by the first download and dead after the export expires. The download is
// in the patient's access log.
func (s *Server) downloadExport(c *fiber.Ctx) error {
	eid, err := idParam(c, "export")
	if err != nil {
		return err
	}
	token := c.Query("token")
	if len(token) != 43 {
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such export")
	}
	if s.cfg.Exports == nil || s.cfg.Documents == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node makes no exports")
	}
	sum := sha256.Sum256([]byte(token))
	e, err := s.cfg.Exports.TakeExportDownload(c.UserContext(), eid, sum[:], time.Now().UTC())
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return problem(fiber.StatusNotFound, "not-found", "Not found", "no such export")
	case errors.Is(err, persistence.ErrExportNotReady):
		p := problem(fiber.StatusConflict, "wrong-state", "Not allowed in the current state", "the export is not ready yet")
		p.retryAfter = "2"
		return p
	case errors.Is(err, persistence.ErrExportUsed):
		return problem(fiber.StatusGone, "gone", "Gone", "this link was used already or has expired; ask for a new export")
	case err != nil:
		return directoryUnavailable(s, err)
	}
	by := &messages.Caller{Subject: e.RequestedBy, Client: "export-link", RequestId: c.GetRespHeader(fiber.HeaderXRequestID), SourceAddress: c.IP()}
	ev := audit.Event(by, messages.AuditAction_AUDIT_ACTION_DOWNLOAD_EXPORT, "export", e.ID, e.PatientID, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", time.Now())
	actx, acancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	err = s.cfg.Audit.Record(actx, ev)
	acancel()
	if err != nil {
		s.cfg.Logger.Error("export download not audited: refused", "export", e.ID, "error", err)
		return problem(fiber.StatusServiceUnavailable, "audit-unavailable", "Audit trail unavailable", "the download could not be audited; ask for a new export")
	}
	key, err := s.cfg.Exports.ExportKey(e)
	if err != nil {
		s.cfg.Logger.Error("export key does not open", "export", e.ID, "error", err)
		return problem(fiber.StatusInternalServerError, "internal", "Internal error", "")
	}
	ctx, cancel := s.cfg.Documents.storeContext(c)
	stored, err := s.cfg.Documents.Store.Get(ctx, e.BlobKey)
	if err != nil {
		cancel()
		s.cfg.Logger.Error("export unreadable", "export", e.ID, "error", err)
		return problem(fiber.StatusServiceUnavailable, "store-unavailable", "Document store unavailable", "")
	}
	content, err := seal.OpenStream(stored, key, patient.ExportAAD(e.ID))
	if err != nil {
		stored.Close()
		cancel()
		return problem(fiber.StatusInternalServerError, "internal", "Internal error", "")
	}
	c.Set(fiber.HeaderContentType, "application/zip")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="caregrid-export-`+e.ID+`.zip"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	plain, err := seal.PlainSize(e.Size)
	if err != nil {
		plain = -1
	}
	return c.SendStream(&closing{Reader: content, close: func() error { cancel(); return stored.Close() },
		failed: func(err error) { s.cfg.Logger.Error("export failed while it was sent", "export", e.ID, "error", err) }}, int(plain))
}
