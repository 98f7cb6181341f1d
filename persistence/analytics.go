package persistence

import (
	"context"
	"fmt"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
)

// AnalyticsQuery selects appointments by their start: From inclusive, To
// exclusive (whole UTC days), at one clinic's doctors or every clinic's
// (ClinicID ""), of one doctor or all (DoctorID ""), grouped by Interval:
// day, week or month.
type AnalyticsQuery struct {
	From, To           time.Time
	ClinicID, DoctorID string
	Interval           string
}

// AppointmentPeriod is one period's appointments by outcome.
type AppointmentPeriod struct {
	Period                                     string // its first day, YYYY-MM-DD
	Appointments, Completed, Cancelled, NoShow int64
}

// DoctorFigures are one doctor's appointments over the query's span.
type DoctorFigures struct {
	DoctorID, DoctorName, ClinicID, ClinicName string
	Appointments, Completed, Cancelled, NoShow int64
	// BookedMinutes are the minutes of appointments that held their time
	// (all but cancelled ones).
	BookedMinutes float64
	// MedianLead is the median time from booking to the appointment's
	// start (nil: no appointment).
	MedianLead *float64
	// Availability is the doctor's working hours (their calendar's).
	Availability *messages.Availability
}

// counted are the statuses an appointment counts under: it was booked
// (held, released and expired holds never were).
var counted = []string{
	messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED.Name(), messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_COMPLETED.Name(), messages.AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW.Name(),
	messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED.Name(),
}

var (
	completedStatus = messages.AppointmentStatus_APPOINTMENT_STATUS_COMPLETED.Name()
	cancelledStatus = messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED.Name()
	noShowStatus    = messages.AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW.Name()
)

// AppointmentPeriods counts the appointments per period, every period of
// the span listed (an empty one with zeros).
func (db *DB) AppointmentPeriods(ctx context.Context, q AnalyticsQuery) ([]AppointmentPeriod, error) {
	if q.Interval != "day" && q.Interval != "week" && q.Interval != "month" {
		return nil, fmt.Errorf("analytics: interval %q", q.Interval)
	}
	rows, err := db.Pool.Query(ctx, `WITH periods AS (
			SELECT generate_series(date_trunc($3, $1::timestamptz AT TIME ZONE 'UTC'), ($2::timestamptz AT TIME ZONE 'UTC') - interval '1 microsecond', ('1 ' || $3)::interval) AS p),
		a AS (SELECT date_trunc($3, a.start_at AT TIME ZONE 'UTC') AS p, a.status FROM appointments a JOIN doctors d ON d.id = a.doctor_id
			WHERE a.start_at >= $1 AND a.start_at < $2 AND a.status = ANY($5) AND ($4 = '' OR d.clinic_id::text = $4)
				AND ($9 = '' OR d.id::text = $9))
		SELECT to_char(periods.p, 'YYYY-MM-DD'), count(a.status), count(a.status) FILTER (WHERE a.status = $6),
			count(a.status) FILTER (WHERE a.status = $7), count(a.status) FILTER (WHERE a.status = $8)
		FROM periods LEFT JOIN a ON a.p = periods.p GROUP BY periods.p ORDER BY periods.p`,
		q.From, q.To, q.Interval, q.ClinicID, counted, completedStatus, cancelledStatus, noShowStatus, q.DoctorID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[AppointmentPeriod])
	return out, classify(err)
}

// DoctorAppointmentFigures are each doctor's figures over the span, the
// busiest first, at most limit doctors.
func (db *DB) DoctorAppointmentFigures(ctx context.Context, q AnalyticsQuery, limit int) ([]DoctorFigures, error) {
	rows, err := db.Pool.Query(ctx, `SELECT d.id::text, d.family_name || ' ' || d.given_name, d.clinic_id::text, c.name, d.availability,
			count(a.id), count(a.id) FILTER (WHERE a.status = $5), count(a.id) FILTER (WHERE a.status = $6), count(a.id) FILTER (WHERE a.status = $7),
			COALESCE(sum(extract(epoch FROM a.end_at - a.start_at) / 60) FILTER (WHERE a.status <> $6), 0),
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.start_at - a.created_at)) FILTER (WHERE a.id IS NOT NULL)
		FROM doctors d JOIN clinics c ON c.id = d.clinic_id
		LEFT JOIN appointments a ON a.doctor_id = d.id AND a.start_at >= $1 AND a.start_at < $2 AND a.status = ANY($4)
		WHERE ($3 = '' OR d.clinic_id::text = $3) AND ($9 = '' OR d.id::text = $9)
		GROUP BY d.id, c.name ORDER BY count(a.id) DESC, d.family_name, d.id LIMIT $8`,
		q.From, q.To, q.ClinicID, counted, completedStatus, cancelledStatus, noShowStatus, limit, q.DoctorID)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []DoctorFigures
	for rows.Next() {
		var f DoctorFigures
		var avail []byte
		if err := rows.Scan(&f.DoctorID, &f.DoctorName, &f.ClinicID, &f.ClinicName, &avail,
			&f.Appointments, &f.Completed, &f.Cancelled, &f.NoShow, &f.BookedMinutes, &f.MedianLead); err != nil {
			return nil, classify(err)
		}
		f.Availability = &messages.Availability{}
		if err := protojson.Unmarshal(avail, f.Availability); err != nil {
			return nil, fmt.Errorf("doctor %s availability: %w", f.DoctorID, err)
		}
		out = append(out, f)
	}
	return out, classify(rows.Err())
}

// DiagnosisCount is how many visits recorded one diagnosis code.
type DiagnosisCount struct {
	Code   string
	Visits int64
}

// TopDiagnoses are the codes recorded most often in visits of the span,
// from the counts (diagnosis_counts), at most limit; a code recorded in
// fewer than atLeast visits is left out (a small count may point to a
// patient).
func (db *DB) TopDiagnoses(ctx context.Context, q AnalyticsQuery, atLeast, limit int) ([]DiagnosisCount, error) {
	rows, err := db.Pool.Query(ctx, `SELECT dc.code, sum(dc.visits)::bigint FROM diagnosis_counts dc JOIN doctors d ON d.id = dc.doctor_id
		WHERE dc.day >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND dc.day < ($2::timestamptz AT TIME ZONE 'UTC')::date
			AND ($3 = '' OR d.clinic_id::text = $3) AND ($6 = '' OR dc.doctor_id::text = $6)
		GROUP BY dc.code HAVING sum(dc.visits) >= $4 ORDER BY 2 DESC, 1 LIMIT $5`, q.From, q.To, q.ClinicID, atLeast, limit, q.DoctorID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DiagnosisCount])
	return out, classify(err)
}

// AvailableMinutes are the minutes a doctor's working hours offer on the
// dates from from's to the day before to's (the query's days, taken as
// the doctor's own dates; a date's exception replaces its weekday's hours).
func AvailableMinutes(a *messages.Availability, from, to time.Time) float64 {
	weekly := map[string]float64{}
	for _, w := range a.GetWeekly() {
		weekly[w.GetWeekday()] += rangeMinutes(w.GetRanges())
	}
	exceptions := map[string]float64{}
	for _, x := range a.GetExceptions() {
		exceptions[x.GetDate()] = rangeMinutes(x.GetRanges())
	}
	var total float64
	last := time.Date(to.Year(), to.Month(), to.Day(), 0, 0, 0, 0, time.UTC)
	for d := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC); d.Before(last); d = d.AddDate(0, 0, 1) {
		if m, ok := exceptions[d.Format(time.DateOnly)]; ok {
			total += m
			continue
		}
		total += weekly[weekdayNames[d.Weekday()]]
	}
	return total
}

var weekdayNames = [...]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

func rangeMinutes(rs []*messages.TimeRange) float64 {
	var m float64
	for _, r := range rs {
		s, err1 := time.Parse("15:04", r.GetStart())
		e, err2 := time.Parse("15:04", r.GetEnd())
		if err1 == nil && err2 == nil && e.After(s) {
			m += e.Sub(s).Minutes()
		}
	}
	return m
}
