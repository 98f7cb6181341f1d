// Package pgtest gives each test a fresh, migrated database on the real
// server named by DATABASE_URL (default: the local PostgreSQL at
// 127.0.0.1:5432). A missing server fails the test: it never skips.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultURL is used when DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// BaseURL is the server tests create their databases on.
func BaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewURL creates an empty database and returns its URL; it is dropped when
// the test ends.
func NewURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := BaseURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connect to %s (set DATABASE_URL, or start PostgreSQL): %v", redact(base), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "caregrid_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: parse DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// New returns a pool on a fresh, migrated database, closed and dropped when
// the test ends.
func New(t testing.TB) *persistence.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := persistence.Open(ctx, NewURL(t), 20)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return db
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "DATABASE_URL"
	}
	return u.Redacted()
}

// MasterKey is a fixed master key for tests that seal patients' data.
func MasterKey(t testing.TB) *seal.Key {
	t.Helper()
	k, err := seal.NewKey(bytes.Repeat([]byte{0x5e}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Doctor stores a clinic and a doctor in it (15-minute slots, no hours)
// and returns the doctor's id and the fence its creating activation holds.
func Doctor(t testing.TB, db *persistence.DB) (string, persistence.Fence) {
	t.Helper()
	ctx := context.Background()
	now := timestamppb.Now()
	c := &messages.ClinicRecord{Id: uuid.NewString(), Name: "Clinic", TimeZone: "Europe/Chisinau", Version: 1, CreatedAt: now, UpdatedAt: now}
	if _, err := db.CreateClinic(ctx, "node-a", c, nil, &messages.ClinicCreated{Clinic: c}); err != nil {
		t.Fatal(err)
	}
	d := &messages.DoctorRecord{Id: uuid.NewString(), GivenName: "Ana", FamilyName: "Rusu", Specialty: "cardiology",
		ClinicId: c.Id, TimeZone: "Europe/Chisinau", SlotMinutes: 15, Version: 1, CreatedAt: now, UpdatedAt: now}
	f, err := db.CreateDoctor(ctx, "node-a", d, &messages.Availability{SlotMinutes: 15}, nil, &messages.DoctorChanged{Doctor: d})
	if err != nil {
		t.Fatal(err)
	}
	return d.Id, f
}
