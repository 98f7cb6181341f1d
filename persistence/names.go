package persistence

import (
	"context"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The names a person reads where the API would otherwise show ids: who
// read a record, which doctor and clinic a slot is with, whose appointment
// an agenda lists. Each lookup takes a page's ids at once (one query per
// page, whatever its length); an id it does not know is absent from the
// answer, and the reader sees the id alone.

// Reader is who an audited access was made by.
type Reader struct {
	// Name is the account's display name; for a doctor the name on their
	// record, for a patient the name on theirs; else the username.
	Name string
	Role string
	// ClinicID and ClinicName are a staff member's clinic (a doctor's from
	// their record); empty for patients and for staff of no one clinic.
	ClinicID, ClinicName string
}

// Readers looks up the accounts behind audit subjects (account ids; a
// patient's account id is their patient id).
func (db *DB) Readers(ctx context.Context, subjects []string) (map[string]Reader, error) {
	ids := uuids(subjects)
	out := make(map[string]Reader, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Pool.Query(ctx, `SELECT a.id::TEXT,
			coalesce(nullif(a.display_name, ''), d.given_name || ' ' || d.family_name,
				p.given_name || ' ' || p.family_name, a.username),
			a.role, coalesce(c.id::TEXT, ''), coalesce(c.name, '')
		FROM accounts a
		LEFT JOIN doctors d ON d.id = a.id
		LEFT JOIN patient_search p ON p.patient_id = a.id
		LEFT JOIN clinics c ON c.id = coalesce(a.clinic_id, d.clinic_id)
		WHERE a.id = ANY($1::TEXT[]::UUID[])`, ids)
	if err != nil {
		return nil, classify(err)
	}
	var (
		id string
		r  Reader
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &r.Name, &r.Role, &r.ClinicID, &r.ClinicName}, func() error {
		out[id] = r
		return nil
	})
	return out, classify(err)
}

// ClientNames maps OAuth client ids to the applications' names.
func (db *DB) ClientNames(ctx context.Context, clients []string) (map[string]string, error) {
	return db.namesOf(ctx, `SELECT id, name FROM oidc_clients WHERE id = ANY($1)`, distinct(clients))
}

// PatientNames maps patient ids to "given family" from the search read
// model (demographics, never the clinical record).
func (db *DB) PatientNames(ctx context.Context, patients []string) (map[string]string, error) {
	return db.namesOf(ctx, `SELECT patient_id::TEXT, given_name || ' ' || family_name FROM patient_search
		WHERE patient_id = ANY($1::TEXT[]::UUID[])`, uuids(patients))
}

// DoctorNames maps doctor ids to "given family".
func (db *DB) DoctorNames(ctx context.Context, doctors []string) (map[string]string, error) {
	return db.namesOf(ctx, `SELECT id::TEXT, given_name || ' ' || family_name FROM doctors
		WHERE id = ANY($1::TEXT[]::UUID[])`, uuids(doctors))
}

// ClinicNames maps clinic ids to their names.
func (db *DB) ClinicNames(ctx context.Context, clinics []string) (map[string]string, error) {
	return db.namesOf(ctx, `SELECT id::TEXT, name FROM clinics WHERE id = ANY($1::TEXT[]::UUID[])`, uuids(clinics))
}

func (db *DB) namesOf(ctx context.Context, query string, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Pool.Query(ctx, query, ids)
	if err != nil {
		return nil, classify(err)
	}
	var id, name string
	_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error {
		out[id] = name
		return nil
	})
	return out, classify(err)
}

// uuids is ids without repeats and without what is not a canonical UUID
// (a service's subject, an id an old row carries): what would fail the
// cast finds nothing anyway.
func uuids(ids []string) []string {
	out := distinct(ids)
	n := 0
	for _, id := range out {
		if isCanonicalUUID(id) {
			out[n] = id
			n++
		}
	}
	return out[:n]
}

func distinct(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func isCanonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// AccountStatuses are the ?status= filters of the account directory.
var AccountStatuses = []string{"active", "disabled", "locked", "unverified"}

// AccountListing is an account with the name and clinic readers see.
type AccountListing struct {
	Account
	Reader
}

// ListAccounts returns up to limit accounts by username after the
// username after ("" from the first): of a role ("" any), whose username,
// email or name contains q (case-insensitive; "" any), in a status of
// AccountStatuses ("" any).
func (db *DB) ListAccounts(ctx context.Context, role, q, status, after string, limit int) ([]AccountListing, error) {
	pattern := ""
	if q != "" {
		pattern = "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(q)) + "%"
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+accountColumns+`, reader_name, role, reader_clinic_id, reader_clinic_name FROM (
			SELECT a.*, coalesce(nullif(a.display_name, ''), d.given_name || ' ' || d.family_name,
					p.given_name || ' ' || p.family_name, a.username) AS reader_name,
				coalesce(c.id::TEXT, '') AS reader_clinic_id, coalesce(c.name, '') AS reader_clinic_name
			FROM accounts a
			LEFT JOIN doctors d ON d.id = a.id
			LEFT JOIN patient_search p ON p.patient_id = a.id
			LEFT JOIN clinics c ON c.id = coalesce(a.clinic_id, d.clinic_id)
		) accounts
		WHERE ($1 = '' OR role = $1) AND lower(username) > $2
		AND ($3 = '' OR lower(username) LIKE $3 OR lower(email) LIKE $3 OR lower(reader_name) LIKE $3)
		AND CASE $4
			WHEN 'active' THEN NOT disabled AND verified AND (locked_until IS NULL OR locked_until <= now())
			WHEN 'disabled' THEN disabled
			WHEN 'locked' THEN locked_until > now()
			WHEN 'unverified' THEN NOT verified
			ELSE TRUE END
		ORDER BY lower(username) LIMIT $5`, role, strings.ToLower(after), pattern, status, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccountListing, error) {
		var l AccountListing
		err := r.Scan(&l.ID, &l.Username, &l.Email, &l.Account.Role, &l.PasswordHash, &l.TOTPSealed, &l.MustChangePassword,
			&l.FailedLogins, &l.LockedUntil, &l.Disabled, &l.Verified, &l.CreatedAt, &l.DisplayName, &l.Account.ClinicID,
			&l.Name, &l.Reader.Role, &l.Reader.ClinicID, &l.ClinicName)
		return l, err
	})
	return out, classify(err)
}
