package persistence

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/caregrid/caregrid/messages"
)

// MaxDirectoryRows bounds a directory listing before its name filter: a
// hospital network's doctors and clinics, not a register to walk.
const MaxDirectoryRows = 5000

// ListDoctors returns the doctors of a specialty (SpecialtyKey form; ""
// any) and a clinic ("" any), by family name, given name and id.
func (db *DB) ListDoctors(ctx context.Context, specialty, clinic string) ([]*messages.DoctorRecord, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, given_name, family_name, specialty, clinic_id, email, phone, time_zone,
			slot_minutes, version, created_at, updated_at
		FROM doctors WHERE ($1 = '' OR lower(trim(specialty)) = $1) AND ($2 = '' OR clinic_id::TEXT = $2)
		ORDER BY family_name, given_name, id LIMIT $3`, specialty, clinic, MaxDirectoryRows)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.DoctorRecord, error) {
		var (
			id, clinic       uuid.UUID
			created, updated time.Time
			d                = &messages.DoctorRecord{}
		)
		if err := r.Scan(&id, &d.GivenName, &d.FamilyName, &d.Specialty, &clinic, &d.Email, &d.Phone, &d.TimeZone,
			&d.SlotMinutes, &d.Version, &created, &updated); err != nil {
			return nil, err
		}
		d.Id, d.ClinicId, d.CreatedAt, d.UpdatedAt = id.String(), clinic.String(), timestamppb.New(created), timestamppb.New(updated)
		return d, nil
	})
	return out, classify(err)
}

// ListClinics returns every clinic by name and id.
func (db *DB) ListClinics(ctx context.Context) ([]*messages.ClinicRecord, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, name, address, time_zone, version, created_at, updated_at
		FROM clinics ORDER BY name, id LIMIT $1`, MaxDirectoryRows)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*messages.ClinicRecord, error) {
		var (
			id               uuid.UUID
			created, updated time.Time
			c                = &messages.ClinicRecord{}
		)
		if err := r.Scan(&id, &c.Name, &c.Address, &c.TimeZone, &c.Version, &created, &updated); err != nil {
			return nil, err
		}
		c.Id, c.CreatedAt, c.UpdatedAt = id.String(), timestamppb.New(created), timestamppb.New(updated)
		return c, nil
	})
	return out, classify(err)
}
