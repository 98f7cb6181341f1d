package edge

import (
	"context"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/persistence"
	"github.com/gofiber/fiber/v2"
)

// Analytics are the read models the console's analytics come from:
// appointments and the diagnosis counts, never the grains.
type Analytics interface {
	AppointmentPeriods(ctx context.Context, q persistence.AnalyticsQuery) ([]persistence.AppointmentPeriod, error)
	DoctorAppointmentFigures(ctx context.Context, q persistence.AnalyticsQuery, limit int) ([]persistence.DoctorFigures, error)
	TopDiagnoses(ctx context.Context, q persistence.AnalyticsQuery, atLeast, limit int) ([]persistence.DiagnosisCount, error)
}

const (
	// maxAnalyticsDays bounds an analytics query's span.
	maxAnalyticsDays = 731
	// maxAnalyticsDoctors bounds the doctors one answer lists.
	maxAnalyticsDoctors = 500
	// MinDiagnosisCount: a code recorded in fewer visits is not shown (a
	// small count, at one clinic, may point to a patient).
	MinDiagnosisCount = 3
)

type periodJSON struct {
	Period       string `json:"period"`
	Appointments int64  `json:"appointments"`
	Completed    int64  `json:"completed"`
	Cancelled    int64  `json:"cancelled"`
	NoShows      int64  `json:"no_shows"`
}

type doctorFiguresJSON struct {
	DoctorID          string   `json:"doctor_id"`
	DoctorName        string   `json:"doctor_name"`
	ClinicID          string   `json:"clinic_id"`
	ClinicName        string   `json:"clinic_name"`
	Appointments      int64    `json:"appointments"`
	Completed         int64    `json:"completed"`
	Cancelled         int64    `json:"cancelled"`
	NoShows           int64    `json:"no_shows"`
	BookedMinutes     float64  `json:"booked_minutes"`
	AvailableMinutes  float64  `json:"available_minutes"`
	MedianLeadSeconds *float64 `json:"median_lead_seconds,omitempty"`
}

// analyticsQuery reads ?from=, ?to= (dates, to exclusive), ?clinic=, ?doctor=,
// ?interval= (day, week, month) of an analytics route, for an admin.
func (s *Server) analyticsQuery(c *fiber.Ctx) (persistence.AnalyticsQuery, error) {
	caller, err := s.caller(c)
	if err != nil {
		return persistence.AnalyticsQuery{}, err
	}
	if d := access.ReadAnalytics(caller); !d.Allowed {
		return persistence.AnalyticsQuery{}, forbidden(d.Reason)
	}
	q := persistence.AnalyticsQuery{Interval: c.Query("interval", "week")}
	var bad []FieldError
	for _, f := range []struct {
		name string
		at   *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		t, err := time.Parse(time.DateOnly, c.Query(f.name))
		if err != nil {
			bad = append(bad, FieldError{f.name, "must be a date such as 2026-11-01"})
		}
		*f.at = t
	}
	if len(bad) == 0 && (!q.To.After(q.From) || q.To.Sub(q.From) > maxAnalyticsDays*24*time.Hour) {
		bad = append(bad, FieldError{"to", fmt.Sprintf("must be after from, at most %d days on", maxAnalyticsDays)})
	}
	if q.Interval != "day" && q.Interval != "week" && q.Interval != "month" {
		bad = append(bad, FieldError{"interval", "must be day, week or month"})
	}
	if cl := c.Query("clinic"); cl != "" {
		if !isUUID(cl) {
			bad = append(bad, FieldError{"clinic", "must be a clinic id (UUID)"})
		}
		q.ClinicID = normalUUID(cl)
	}
	if dr := c.Query("doctor"); dr != "" {
		if !isUUID(dr) {
			bad = append(bad, FieldError{"doctor", "must be a doctor id (UUID)"})
		}
		q.DoctorID = normalUUID(dr)
	}
	if f := c.Query("format", "json"); f != "json" && f != "csv" {
		bad = append(bad, FieldError{"format", "must be json or csv"})
	}
	if len(bad) > 0 {
		return q, malformed("the query is not valid; see errors", bad...)
	}
	if s.cfg.Analytics == nil {
		return q, problem(fiber.StatusServiceUnavailable, "unavailable", "Temporarily unavailable", "this node serves no analytics")
	}
	return q, nil
}

// appointmentAnalytics answers GET /v1/analytics/appointments: the
// appointments per period, and per doctor with utilisation (booked of
// available minutes), cancellations, no-shows and the median lead time;
// ?format=csv gives the per-doctor table. No patient is named (admins).
func (s *Server) appointmentAnalytics(c *fiber.Ctx) error {
	q, err := s.analyticsQuery(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	periods, err := s.cfg.Analytics.AppointmentPeriods(ctx, q)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	figures, err := s.cfg.Analytics.DoctorAppointmentFigures(ctx, q, maxAnalyticsDoctors)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	out := struct {
		Periods []periodJSON        `json:"periods"`
		Doctors []doctorFiguresJSON `json:"doctors"`
	}{Periods: make([]periodJSON, 0, len(periods)), Doctors: make([]doctorFiguresJSON, 0, len(figures))}
	for _, p := range periods {
		out.Periods = append(out.Periods, periodJSON{p.Period, p.Appointments, p.Completed, p.Cancelled, p.NoShow})
	}
	for _, f := range figures {
		out.Doctors = append(out.Doctors, doctorFiguresJSON{DoctorID: f.DoctorID, DoctorName: f.DoctorName, ClinicID: f.ClinicID,
			ClinicName: f.ClinicName, Appointments: f.Appointments, Completed: f.Completed, Cancelled: f.Cancelled, NoShows: f.NoShow,
			BookedMinutes: f.BookedMinutes, AvailableMinutes: persistence.AvailableMinutes(f.Availability, q.From, q.To),
			MedianLeadSeconds: f.MedianLead})
	}
	if c.Query("format") != "csv" {
		return c.JSON(out)
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"doctor_id", "doctor_name", "clinic_id", "clinic_name", "appointments", "completed", "cancelled", "no_shows",
		"booked_minutes", "available_minutes", "median_lead_seconds"})
	for _, d := range out.Doctors {
		lead := ""
		if d.MedianLeadSeconds != nil {
			lead = strconv.FormatFloat(*d.MedianLeadSeconds, 'f', 0, 64)
		}
		_ = w.Write(csvSafe([]string{d.DoctorID, d.DoctorName, d.ClinicID, d.ClinicName, strconv.FormatInt(d.Appointments, 10),
			strconv.FormatInt(d.Completed, 10), strconv.FormatInt(d.Cancelled, 10), strconv.FormatInt(d.NoShows, 10),
			strconv.FormatFloat(d.BookedMinutes, 'f', 0, 64), strconv.FormatFloat(d.AvailableMinutes, 'f', 0, 64), lead}))
	}
	w.Flush()
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="caregrid-appointments-`+q.From.Format(time.DateOnly)+`.csv"`)
	return c.SendString(b.String())
}

// diagnosisAnalytics answers GET /v1/analytics/diagnoses: the diagnosis
// codes recorded most often in the span, counts only, each at least
// MinDiagnosisCount (admins).
func (s *Server) diagnosisAnalytics(c *fiber.Ctx) error {
	q, err := s.analyticsQuery(c)
	if err != nil {
		return err
	}
	limit := 20
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 200 {
			return malformed("limit must be a whole number from 1 to 200", FieldError{"limit", "must be 1 to 200"})
		}
		limit = n
	}
	ds, err := s.cfg.Analytics.TopDiagnoses(c.UserContext(), q, MinDiagnosisCount, limit)
	if err != nil {
		return directoryUnavailable(s, err)
	}
	type diagnosisJSON struct {
		Code   string `json:"code"`
		Visits int64  `json:"visits"`
	}
	out := make([]diagnosisJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, diagnosisJSON{d.Code, d.Visits})
	}
	return c.JSON(fiber.Map{"diagnoses": out, "min_count": MinDiagnosisCount})
}
