package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Grain kinds whose fences guard the clinics and doctors tables.
const (
	ClinicKind   = "Clinic"
	CalendarKind = "Calendar"
)

// ErrExists is returned when creating an aggregate whose id is taken:
// another activation created it first.
var ErrExists = errors.New("already exists")

// ErrNoClinic is returned when a doctor names a clinic that does not exist.
var ErrNoClinic = errors.New("no such clinic")

// StoredClinic is a clinic row.
type StoredClinic struct {
	Record      *messages.ClinicRecord
	Fingerprint []byte
}

const clinicColumns = `id, name, address, time_zone, version, registration_fingerprint, created_at, updated_at`

// LoadClinic reads a clinic for a new activation (see loadClaimed).
func (db *DB) LoadClinic(ctx context.Context, id, owner string) (*StoredClinic, Fence, error) {
	var sc *StoredClinic
	f, found, err := db.loadClaimed(ctx, ClinicKind, "clinics", id, owner, func(tx pgx.Tx) error {
		var (
			cid              uuid.UUID
			created, updated time.Time
			c                = &messages.ClinicRecord{}
			fp               []byte
		)
		err := tx.QueryRow(ctx, `SELECT `+clinicColumns+` FROM clinics WHERE id = $1`, id).
			Scan(&cid, &c.Name, &c.Address, &c.TimeZone, &c.Version, &fp, &created, &updated)
		c.Id, c.CreatedAt, c.UpdatedAt = cid.String(), timestamppb.New(created), timestamppb.New(updated)
		sc = &StoredClinic{Record: c, Fingerprint: fp}
		return err
	})
	if err != nil || !found {
		return nil, Fence{}, err
	}
	return sc, f, nil
}

// CreateClinic inserts a clinic with its event; ErrExists when the id is taken.
func (db *DB) CreateClinic(ctx context.Context, owner string, c *messages.ClinicRecord, fingerprint []byte, event proto.Message) (Fence, error) {
	f, err := db.createClaimed(ctx, ClinicKind, c.Id, owner, c.Version, event, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clinics (`+clinicColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.Id, c.Name, c.Address, c.TimeZone, c.Version, nonNil(fingerprint), c.CreatedAt.AsTime(), c.UpdatedAt.AsTime())
		return err
	})
	if isUniqueViolation(err, "clinics_pkey") {
		return Fence{}, ErrExists
	}
	return f, classify(err)
}

// UpdateClinic writes a clinic's new name, address or time zone through
// the fence, with its event.
func (db *DB) UpdateClinic(ctx context.Context, f Fence, c *messages.ClinicRecord, prevVersion int64, event proto.Message) error {
	return db.writeFenced(ctx, f, c.Version, event, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE clinics SET name = $2, address = $3, time_zone = $4, version = $5, updated_at = $6
			WHERE id = $1 AND version = $7`, c.Id, c.Name, c.Address, c.TimeZone, c.Version, c.UpdatedAt.AsTime(), prevVersion)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("clinic %s: %w %d", c.Id, ErrStale, prevVersion)
		}
		return err
	})
}

// ClinicExists reports whether a clinic exists.
func (db *DB) ClinicExists(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clinics WHERE id = $1)`, id).Scan(&ok)
	return ok, classify(err)
}

// StoredDoctor is a doctor row: profile, working hours and the fingerprint
// of the idempotent request that created it.
type StoredDoctor struct {
	Record       *messages.DoctorRecord
	Availability *messages.Availability
	Fingerprint  []byte
	// Appointments are those that hold time ending after LoadDoctor's since.
	Appointments []StoredAppointment
}

const doctorColumns = `id, given_name, family_name, specialty, clinic_id, email, phone, time_zone,
	slot_minutes, availability, version, registration_fingerprint, created_at, updated_at`

var availabilityJSON = protojson.MarshalOptions{UseProtoNames: true}

// LoadDoctor reads a doctor for a new activation (see loadClaimed), with
// the appointments that hold time ending after since.
func (db *DB) LoadDoctor(ctx context.Context, id, owner string, since time.Time) (*StoredDoctor, Fence, error) {
	var sd *StoredDoctor
	f, found, err := db.loadClaimed(ctx, CalendarKind, "doctors", id, owner, func(tx pgx.Tx) error {
		var (
			did, clinic      uuid.UUID
			created, updated time.Time
			avail            []byte
			d                = &messages.DoctorRecord{}
			fp               []byte
		)
		err := tx.QueryRow(ctx, `SELECT `+doctorColumns+` FROM doctors WHERE id = $1`, id).
			Scan(&did, &d.GivenName, &d.FamilyName, &d.Specialty, &clinic, &d.Email, &d.Phone, &d.TimeZone,
				&d.SlotMinutes, &avail, &d.Version, &fp, &created, &updated)
		if err != nil {
			return err
		}
		d.Id, d.ClinicId, d.CreatedAt, d.UpdatedAt = did.String(), clinic.String(), timestamppb.New(created), timestamppb.New(updated)
		a := &messages.Availability{}
		if err := protojson.Unmarshal(avail, a); err != nil {
			return fmt.Errorf("doctor %s availability: %w", id, err)
		}
		appts, err := loadCalendarAppointments(ctx, tx, id, since)
		if err != nil {
			return fmt.Errorf("doctor %s appointments: %w", id, err)
		}
		sd = &StoredDoctor{Record: d, Availability: a, Fingerprint: fp, Appointments: appts}
		return nil
	})
	if err != nil || !found {
		return nil, Fence{}, err
	}
	return sd, f, nil
}

// CreateDoctor inserts a doctor with its event; ErrExists when the id is
// taken, ErrNoClinic when the clinic does not exist.
func (db *DB) CreateDoctor(ctx context.Context, owner string, d *messages.DoctorRecord, a *messages.Availability, fingerprint []byte, event proto.Message) (Fence, error) {
	avail, err := availabilityJSON.Marshal(a)
	if err != nil {
		return Fence{}, err
	}
	f, err := db.createClaimed(ctx, CalendarKind, d.Id, owner, d.Version, event, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO doctors (`+doctorColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			d.Id, d.GivenName, d.FamilyName, d.Specialty, d.ClinicId, d.Email, d.Phone, d.TimeZone,
			d.SlotMinutes, avail, d.Version, nonNil(fingerprint), d.CreatedAt.AsTime(), d.UpdatedAt.AsTime())
		return err
	})
	switch {
	case isUniqueViolation(err, "doctors_pkey"):
		return Fence{}, ErrExists
	case isForeignKeyViolation(err):
		return Fence{}, ErrNoClinic
	}
	return f, classify(err)
}

// UpdateDoctor writes a doctor's new profile and hours through the fence.
func (db *DB) UpdateDoctor(ctx context.Context, f Fence, d *messages.DoctorRecord, a *messages.Availability, prevVersion int64, event proto.Message) error {
	avail, err := availabilityJSON.Marshal(a)
	if err != nil {
		return err
	}
	err = db.writeFenced(ctx, f, d.Version, event, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE doctors SET given_name = $2, family_name = $3, specialty = $4,
			clinic_id = $5, email = $6, phone = $7, time_zone = $8, slot_minutes = $9, availability = $10,
			version = $11, updated_at = $12 WHERE id = $1 AND version = $13`,
			d.Id, d.GivenName, d.FamilyName, d.Specialty, d.ClinicId, d.Email, d.Phone, d.TimeZone,
			d.SlotMinutes, avail, d.Version, d.UpdatedAt.AsTime(), prevVersion)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("doctor %s: %w %d", d.Id, ErrStale, prevVersion)
		}
		return err
	})
	if isForeignKeyViolation(err) {
		return ErrNoClinic
	}
	return err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
