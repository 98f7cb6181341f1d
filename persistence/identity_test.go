package persistence_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/google/uuid"
)

func TestSweepIdentityKeepsWhatStillServes(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	account := uuid.NewString()
	if err := db.CreateAccount(ctx, persistence.Account{ID: account, Username: "sweep", Role: "patient"}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateClient(ctx, persistence.Client{ID: "app", Name: "app", Kind: "public"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	live, old, revokedLong, revokedNow := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	for id, expires := range map[string]time.Time{live: now.Add(time.Hour), old: now.Add(-31 * 24 * time.Hour), revokedLong: now.Add(time.Hour), revokedNow: now.Add(time.Hour)} {
		if err := db.CreateSession(ctx, persistence.Session{ID: id, AccountID: account, ClientID: "app", AuthTime: now, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.RevokeSession(ctx, revokedNow, "logout"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeSession(ctx, revokedLong, "logout"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE oidc_sessions SET revoked_at = now() - interval '40 days' WHERE id = $1`, revokedLong); err != nil {
		t.Fatal(err)
	}
	stale, fresh := uuid.NewString(), uuid.NewString()
	for id, expires := range map[string]time.Time{stale: now.Add(-2 * time.Hour), fresh: now.Add(10 * time.Minute)} {
		if err := db.CreateAuthRequest(ctx, persistence.AuthRequest{ID: id, ClientID: "app", Request: json.RawMessage(`{}`), ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.SweepIdentity(ctx, 30*24*time.Hour)
	if err != nil || n != 3 {
		t.Fatalf("SweepIdentity = %d, %v; want 3 (two sessions, one request)", n, err)
	}
	for id, want := range map[string]bool{live: true, revokedNow: true, old: false, revokedLong: false} {
		_, err := db.SessionByID(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("session kept = %v, want %v (%v)", got, want, err)
		}
	}
	if _, err := db.AuthRequestByID(ctx, fresh); err != nil {
		t.Errorf("a live authorization request was swept: %v", err)
	}
}
