package edge

import (
	"context"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/search"
	"github.com/gofiber/fiber/v2"
)

// PatientSearch is the search read model (persistence.DB).
type PatientSearch interface {
	SearchPatients(ctx context.Context, q persistence.PatientQuery) ([]persistence.PatientView, error)
}

type foundPatientJSON struct {
	ID         string `json:"id"`
	IDNP       string `json:"idnp"`
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
	BirthDate  string `json:"birth_date"`
	Sex        string `json:"sex"`
}

// searchPatients answers GET /v1/patients?q=&birth_date=&sex=&limit=&cursor=
// from the search read model: demographics only, best match first. Every
// patient listed gets an entry in their own access log before the page is
// answered (one append to the audit chain); a page that
// cannot be audited is not served.
func (s *Server) searchPatients(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.SearchPatients(caller); !d.Allowed {
		return forbidden(d.Reason)
	}
	q, err := search.Parse(c.Query("q"))
	if err != nil {
		return malformed(err.Error(), FieldError{"q", err.Error()})
	}
	var bad enumErrors
	if b := c.Query("birth_date"); b != "" {
		if _, err := time.Parse(time.DateOnly, b); err != nil {
			bad = append(bad, FieldError{"birth_date", "must be a date YYYY-MM-DD"})
		}
		q.BirthDate = b
	}
	if sx := c.Query("sex"); sx != "" {
		q.Sex = bad.sex("sex", sx).Name()
	}
	if len(bad) > 0 {
		return invalidInput(bad)
	}
	q.Limit = search.DefaultPageSize
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > search.MaxPageSize {
			return malformed("limit must be a whole number from 1 to 100", FieldError{"limit", "must be 1 to 100"})
		}
		q.Limit = n
	}
	if q.Offset, err = searchCursor(c.Query("cursor")); err != nil {
		return err
	}
	if caller.GetRole() == messages.Role_ROLE_DOCTOR && isUUID(caller.GetSubject()) {
		q.Blocked = normalUUID(caller.GetSubject()) // a patient who blocked the doctor is not found by him
	}
	if s.cfg.Search == nil || s.cfg.Audit == nil || s.cfg.Cluster == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Search unavailable", "this node has no patient search")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.GrainTimeout)
	defer cancel()
	found, err := s.cfg.Search.SearchPatients(ctx, q)
	if err != nil {
		s.cfg.Logger.Error("patient search", "error", err)
		p := problem(fiber.StatusServiceUnavailable, "store-unavailable", "Database unavailable", "the search could not be run; retry")
		p.retryAfter = "1"
		return p
	}
	if err := s.auditSearch(ctx, caller, found); err != nil {
		return err
	}
	out := struct {
		Patients   []foundPatientJSON `json:"patients"`
		NextCursor string             `json:"next_cursor,omitempty"`
	}{Patients: make([]foundPatientJSON, 0, len(found))}
	for _, f := range found {
		out.Patients = append(out.Patients, foundPatientJSON{ID: f.PatientID, IDNP: f.IDNP, GivenName: f.GivenName,
			FamilyName: f.FamilyName, BirthDate: f.BirthDate, Sex: f.Sex})
	}
	if next := q.Offset + len(found); len(found) == q.Limit && next < search.MaxOffset {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(next)))
	}
	return c.JSON(out)
}

func searchCursor(raw string) (int, error) {
	if raw == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	n, aerr := strconv.Atoi(string(b))
	if err != nil || aerr != nil || n < 0 || n >= search.MaxOffset {
		return 0, malformed("cursor is not one this API returned", FieldError{"cursor", "must be a next_cursor from a previous page"})
	}
	return n, nil
}

// listed is one entry of a list a person reads: the resource and the
// patient whose access log records it.
type listed struct{ resourceID, patientID string }

// auditSearch records one "search" access per patient listed.
func (s *Server) auditSearch(ctx context.Context, caller *messages.Caller, found []persistence.PatientView) error {
	items := make([]listed, len(found))
	for i, f := range found {
		items[i] = listed{f.PatientID, f.PatientID}
	}
	return s.auditListed(ctx, caller, messages.AuditAction_AUDIT_ACTION_SEARCH, "patient", items)
}

// auditListed records one access per entry of a page, in one append,
// before the page is answered: a page that cannot be audited is not served.
func (s *Server) auditListed(ctx context.Context, caller *messages.Caller, action messages.AuditAction, resourceType string, items []listed) error {
	now := time.Now()
	events := make([]*messages.AuditEvent, 0, len(items))
	for _, it := range items {
		events = append(events, audit.Event(caller, action, resourceType, it.resourceID, it.patientID,
			messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", now))
	}
	failed := s.cfg.Audit.Record(ctx, events...)
	if failed != nil {
		s.cfg.Logger.Error("list not audited", "action", action, "error", failed)
		p := problem(fiber.StatusServiceUnavailable, "audit-unavailable", "Audit trail unavailable", "the list could not be audited; nothing is shown unaudited")
		p.retryAfter = "1"
		return p
	}
	return nil
}
