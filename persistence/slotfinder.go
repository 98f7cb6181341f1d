package persistence

import (
	"context"
	"strings"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
)

// SpecialtyKey is a specialty as the slot finder matches it: trimmed and
// folded to lower case, so "Cardiology" finds "cardiology ".
func SpecialtyKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// FinderDoctors lists the projected doctors with this specialty and clinic
// ("" matches any), in id order. Each doctor's hours are decoded only if
// known(id, version) is false (nil: always); otherwise Availability is nil
// and the caller uses what it decoded before.
func (db *DB) FinderDoctors(ctx context.Context, specialty, clinic string, known func(id string, version int64) bool) ([]DoctorView, error) {
	var clinicArg any
	if clinic != "" {
		clinicArg = clinic
	}
	rows, err := db.Pool.Query(ctx, `SELECT doctor_id::TEXT, specialty, clinic_id::TEXT, time_zone, slot_minutes, availability::TEXT, version
		FROM slot_finder_doctors
		WHERE ($1 = '' OR specialty_key = $1) AND ($2::UUID IS NULL OR clinic_id = $2::UUID)
		ORDER BY doctor_id`, SpecialtyKey(specialty), clinicArg)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DoctorView, error) {
		var v DoctorView
		var hours string
		if err := r.Scan(&v.DoctorID, &v.Specialty, &v.ClinicID, &v.TimeZone, &v.SlotMinutes, &hours, &v.Version); err != nil {
			return v, err
		}
		if known != nil && known(v.DoctorID, v.Version) {
			return v, nil
		}
		v.Availability = &messages.Availability{}
		return v, protojson.Unmarshal([]byte(hours), v.Availability)
	})
	return out, classify(err)
}

// FinderBusy returns the occupied time of these doctors that starts in
// [from, to), as projected. (The caller widens from by the longest booking
// to see what reaches into its range: the index is on the start.)
func (db *DB) FinderBusy(ctx context.Context, doctors []string, from, to time.Time) ([]BusyView, error) {
	if len(doctors) == 0 {
		return nil, nil
	}
	rows, err := db.Pool.Query(ctx, `SELECT appointment_id::TEXT, doctor_id::TEXT, start_at, end_at, occupied, version
		FROM slot_finder_busy
		WHERE occupied AND doctor_id = ANY($1::TEXT[]::UUID[]) AND start_at >= $2 AND start_at < $3
		ORDER BY doctor_id, start_at`, doctors, from, to)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[BusyView])
	return out, classify(err)
}
