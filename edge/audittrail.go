package edge

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
)

// AuditTrail is the whole audit trail for its reports: a search across
// every shard, and the checks of its chains (the same check as `caregrid
// audit verify`).
type AuditTrail interface {
	SearchAudit(ctx context.Context, q persistence.AuditQuery, limit int) ([]persistence.AuditRow, error)
	AuditVerifications(ctx context.Context, limit int) ([]persistence.AuditVerification, error)
	// CheckTrail starts a check now and carries it out in the background
	// (persistence.ErrVerificationRunning while one runs).
	CheckTrail(ctx context.Context, by string) (persistence.AuditVerification, error)
}

const (
	defaultAuditPage = 50
	maxAuditPage     = 500
	// MaxAuditCSVRows bounds one CSV export of the audit trail: a longer
	// span is exported in parts (narrow the time range).
	MaxAuditCSVRows = 50_000
)

// auditEventJSON is one event of the trail as the reports show it.
type auditEventJSON struct {
	OccurredAt      string `json:"occurred_at"`
	Shard           int32  `json:"shard"`
	Seq             int64  `json:"seq"`
	Subject         string `json:"subject"`
	SubjectName     string `json:"subject_name,omitempty"`
	Role            string `json:"role"`
	Client          string `json:"client,omitempty"`
	PurposeOfUse    string `json:"purpose_of_use,omitempty"`
	Action          string `json:"action"`
	ResourceType    string `json:"resource_type,omitempty"`
	ResourceID      string `json:"resource_id,omitempty"`
	PatientID       string `json:"patient_id,omitempty"`
	Outcome         string `json:"outcome"`
	Detail          string `json:"detail,omitempty"`
	RequestID       string `json:"request_id,omitempty"`
	SourceAddress   string `json:"source_address,omitempty"`
	BreakGlass      string `json:"break_glass_reason,omitempty"`
	ClientRequestID string `json:"client_request_id,omitempty"`
}

// auditTrailCaller is the caller of an audit report route: admins only.
func (s *Server) auditTrailCaller(c *fiber.Ctx) (*messages.Caller, error) {
	caller, err := s.caller(c)
	if err != nil {
		return nil, err
	}
	if d := access.ReadAuditTrail(caller); !d.Allowed {
		return nil, forbidden(d.Reason)
	}
	if s.cfg.AuditTrail == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return nil, problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node does not serve the audit trail")
	}
	return caller, nil
}

// auditQuery reads the search's filters: ?patient=, ?actor= (a subject),
// ?action=, ?outcome=, ?from=, ?to= (RFC 3339), ?cursor=.
func auditQuery(c *fiber.Ctx) (persistence.AuditQuery, error) {
	q := persistence.AuditQuery{Subject: strings.TrimSpace(c.Query("actor"))}
	var bad []FieldError
	if p := c.Query("patient"); p != "" {
		if !isUUID(p) {
			bad = append(bad, FieldError{"patient", "must be a patient id (UUID)"})
		}
		q.PatientID = normalUUID(p)
	}
	if len(q.Subject) > 200 || strings.ContainsFunc(q.Subject, isControl) {
		bad = append(bad, FieldError{"actor", "must be at most 200 characters, without control characters"})
	}
	if a := c.Query("action"); a != "" {
		if _, ok := messages.ParseAuditAction(a); !ok {
			bad = append(bad, FieldError{"action", "must be an audit action such as read, search or login"})
		}
		q.Action = a
	}
	if o := c.Query("outcome"); o != "" {
		if _, ok := messages.ParseAuditOutcome(o); !ok {
			bad = append(bad, FieldError{"outcome", "must be success, denied or failed"})
		}
		q.Outcome = o
	}
	for _, f := range []struct {
		name string
		at   *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if raw := c.Query(f.name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				bad = append(bad, FieldError{f.name, "must be an RFC 3339 instant"})
			}
			*f.at = t
		}
	}
	if raw := c.Query("cursor"); raw != "" {
		cur, ok := parseAuditCursor(raw)
		if !ok {
			bad = append(bad, FieldError{"cursor", "must be a next_cursor from a previous page"})
		}
		q.Before = &cur
	}
	if len(bad) > 0 {
		return q, malformed("the query is not valid; see errors", bad...)
	}
	return q, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func auditCursorOf(r persistence.AuditRow) string {
	return fmt.Sprintf("%d.%d.%d", r.OccurredAt.UnixNano(), r.Shard, r.Seq)
}

func parseAuditCursor(s string) (persistence.AuditCursor, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return persistence.AuditCursor{}, false
	}
	ns, err1 := strconv.ParseInt(parts[0], 10, 64)
	shard, err2 := strconv.ParseInt(parts[1], 10, 32)
	seq, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return persistence.AuditCursor{}, false
	}
	return persistence.AuditCursor{OccurredAt: time.Unix(0, ns).UTC(), Shard: int32(shard), Seq: seq}, true
}

// searchAuditTrail answers GET /v1/audit-events: the whole trail by
// patient, actor, action, outcome and time, newest first, as JSON pages
// or (?format=csv) as one CSV file of at most MaxAuditCSVRows. The search
// itself is audited before anything is answered: under the patient
// searched for, so it shows in their access log, else under the trail.
func (s *Server) searchAuditTrail(c *fiber.Ctx) error {
	caller, err := s.auditTrailCaller(c)
	if err != nil {
		return err
	}
	q, err := auditQuery(c)
	if err != nil {
		return err
	}
	format := c.Query("format", "json")
	if format != "json" && format != "csv" {
		return malformed("format must be json or csv", FieldError{"format", "must be json or csv"})
	}
	limit := defaultAuditPage
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxAuditPage {
			return malformed(fmt.Sprintf("limit must be a whole number from 1 to %d", maxAuditPage), FieldError{"limit", fmt.Sprintf("must be 1 to %d", maxAuditPage)})
		}
		limit = n
	}
	resource := ""
	if q.PatientID != "" {
		resource = q.PatientID
	}
	detail := fmt.Sprintf("format=%s actor=%q action=%q outcome=%q from=%s to=%s", format, q.Subject, q.Action, q.Outcome, stamp(q.From), stamp(q.To))
	event := audit.Event(caller, messages.AuditAction_AUDIT_ACTION_SEARCH_AUDIT_TRAIL, "audit_trail", resource, q.PatientID,
		messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, detail, time.Now())
	if err := s.cfg.Audit.Record(c.UserContext(), event); err != nil {
		s.cfg.Logger.Error("audit search not audited", "error", err)
		p := problem(fiber.StatusServiceUnavailable, "audit-unavailable", "Audit trail unavailable", "the search could not be audited; nothing is shown unaudited")
		p.retryAfter = "1"
		return p
	}
	if format == "csv" {
		return s.auditCSV(c, q)
	}
	rows, err := s.cfg.AuditTrail.SearchAudit(c.UserContext(), q, limit+1)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		Events     []auditEventJSON `json:"events"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{Events: []auditEventJSON{}}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = auditCursorOf(rows[len(rows)-1])
	}
	out.Events = s.auditEvents(c.UserContext(), rows)
	return c.JSON(out)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) auditEvents(ctx context.Context, rows []persistence.AuditRow) []auditEventJSON {
	subjects := make([]string, 0, len(rows))
	for _, r := range rows {
		subjects = append(subjects, r.Subject)
	}
	readers := names(s, ctx, "readers", func(n Names) (map[string]persistence.Reader, error) { return n.Readers(ctx, subjects) })
	out := make([]auditEventJSON, 0, len(rows))
	for _, r := range rows {
		out = append(out, auditEventJSON{
			OccurredAt: instant(r.OccurredAt), Shard: r.Shard, Seq: r.Seq, Subject: r.Subject, SubjectName: readers[r.Subject].Name,
			Role: r.Role, Client: r.Client, PurposeOfUse: r.PurposeOfUse, Action: r.Action, ResourceType: r.ResourceType,
			ResourceID: r.ResourceID, PatientID: r.PatientID, Outcome: r.Outcome, Detail: r.Detail, RequestID: r.RequestID,
			SourceAddress: r.SourceAddress, BreakGlass: r.BreakGlassReason, ClientRequestID: r.ClientRequestID,
		})
	}
	return out
}

var auditCSVHeader = []string{"occurred_at", "shard", "seq", "subject", "subject_name", "role", "client", "purpose_of_use",
	"action", "resource_type", "resource_id", "patient_id", "outcome", "detail", "request_id", "source_address", "break_glass_reason"}

// auditCSV writes the search's events as CSV, page by page, up to
// MaxAuditCSVRows; X-Caregrid-Truncated says when more matched.
func (s *Server) auditCSV(c *fiber.Ctx, q persistence.AuditQuery) error {
	var all []auditEventJSON
	truncated := false
	for len(all) < MaxAuditCSVRows {
		want := min(maxAuditPage*10, MaxAuditCSVRows-len(all))
		rows, err := s.cfg.AuditTrail.SearchAudit(c.UserContext(), q, want)
		if err != nil {
			return directoryUnavailable(s, err)
		}
		all = append(all, s.auditEvents(c.UserContext(), rows)...)
		if len(rows) < want {
			break
		}
		cur := persistence.AuditCursor{OccurredAt: rows[len(rows)-1].OccurredAt, Shard: rows[len(rows)-1].Shard, Seq: rows[len(rows)-1].Seq}
		q.Before = &cur
		if len(all) >= MaxAuditCSVRows {
			more, err := s.cfg.AuditTrail.SearchAudit(c.UserContext(), q, 1)
			truncated = err == nil && len(more) > 0
		}
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write(auditCSVHeader)
	for _, e := range all {
		_ = w.Write(csvSafe([]string{e.OccurredAt, strconv.Itoa(int(e.Shard)), strconv.FormatInt(e.Seq, 10), e.Subject, e.SubjectName,
			e.Role, e.Client, e.PurposeOfUse, e.Action, e.ResourceType, e.ResourceID, e.PatientID, e.Outcome, e.Detail,
			e.RequestID, e.SourceAddress, e.BreakGlass}))
	}
	w.Flush()
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="caregrid-audit-`+time.Now().UTC().Format("20060102T150405Z")+`.csv"`)
	if truncated {
		c.Set("X-Caregrid-Truncated", "true")
	}
	return c.SendString(b.String())
}

// csvSafe keeps a spreadsheet from running a cell as a formula (CSV
// injection): a cell that starts with = + - @ or a tab gets a leading '.
func csvSafe(cells []string) []string {
	for i, v := range cells {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			cells[i] = "'" + v
		}
	}
	return cells
}

// auditVerifications answers GET /v1/audit-verifications: the latest
// checks of the trail, newest first, a running one included (admins).
func (s *Server) auditVerifications(c *fiber.Ctx) error {
	if _, err := s.auditTrailCaller(c); err != nil {
		return err
	}
	vs, err := s.cfg.AuditTrail.AuditVerifications(c.UserContext(), 20)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	if vs == nil {
		vs = []persistence.AuditVerification{}
	}
	return c.JSON(fiber.Map{"verifications": vs})
}

// checkAuditTrail answers POST /v1/audit-verifications: a check of the
// whole trail starts now, in the background (202; 409 while one runs).
// Asking for it is audited.
func (s *Server) checkAuditTrail(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	caller, err := s.auditTrailCaller(c)
	if err != nil {
		return err
	}
	event := audit.Event(caller, messages.AuditAction_AUDIT_ACTION_VERIFY_AUDIT_TRAIL, "audit_trail", "", "",
		messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", time.Now())
	if err := s.cfg.Audit.Record(c.UserContext(), event); err != nil {
		p := problem(fiber.StatusServiceUnavailable, "audit-unavailable", "Audit trail unavailable", "the request could not be audited; retry")
		p.retryAfter = "1"
		return p
	}
	v, err := s.cfg.AuditTrail.CheckTrail(c.UserContext(), caller.GetSubject())
	if errors.Is(err, persistence.ErrVerificationRunning) {
		return problem(fiber.StatusConflict, "check-running", "A check is running", "a check of the audit trail is running; its result shows when it ends")
	}
	if err != nil {
		return directoryUnavailable(s, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(v)
}
