package persistence_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/go-cmp/cmp"
)

func TestMigrateFromEmptyIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db, err := persistence.Open(ctx, pgtest.NewURL(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := persistence.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	pending, err := db.Pending(ctx)
	if err != nil || len(pending) != len(ms) {
		t.Fatalf("Pending(empty) = %v, %v; want all %d migrations", pending, err, len(ms))
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate(empty) = %v", err)
	}
	if pending, err := db.Pending(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("Pending(migrated) = %v, %v; want none", pending, err)
	}
	if len(applied) != len(ms) {
		t.Fatalf("Migrate(empty) applied %v, want all %d migrations", applied, len(ms))
	}
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("Migrate(again) = %v, %v; want nothing applied", again, err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(ms))
	}
}

func newPatient() *messages.PatientRecord {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &messages.PatientRecord{
		Id: uuid.NewString(), Idnp: "2005042129809", GivenName: "Ion", FamilyName: "Popescu",
		BirthDate: "1990-04-05", Sex: messages.Sex_SEX_MALE, Phone: "+37369123456", Email: "ion@example.md",
		BloodType: messages.BloodType_BLOOD_TYPE_AB_NEG,
		Allergies: []*messages.Allergy{{Substance: "penicillin", Reaction: "rash", Severity: messages.AllergySeverity_ALLERGY_SEVERITY_SEVERE}},
		Version:   1, CreatedAt: timestamppb.New(now), UpdatedAt: timestamppb.New(now),
	}
}

// testMaster is a master key for the tests' patient data keys.
func testMaster(t *testing.T) *seal.Key {
	t.Helper()
	k, err := seal.NewKey(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPatientRoundTripAndOutbox(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	p := newPatient()
	fp := []byte("fingerprint")
	_, k, err := db.RegisterPatient(ctx, "node-a", testMaster(t), p, fp, &messages.PatientRegistered{Patient: p})
	if err != nil {
		t.Fatalf("RegisterPatient = %v", err)
	}
	got, f, err := db.LoadPatient(ctx, p.Id, "node-a")
	if err != nil || got == nil {
		t.Fatalf("LoadPatient = %v, %v", got, err)
	}
	// Blood type and allergies are sealed: the row holds neither in plain.
	var blood, allergies, sealed, history string
	if err := db.Pool.QueryRow(ctx, `SELECT p.blood_type, p.allergies::TEXT, encode(p.clinical_sealed, 'escape'), encode(h.sealed, 'escape')
		FROM patients p JOIN patient_clinical_history h ON h.patient_id = p.id WHERE p.id = $1`, p.Id).Scan(&blood, &allergies, &sealed, &history); err != nil {
		t.Fatal(err)
	}
	if blood != "" || allergies != "[]" || strings.Contains(sealed, "penicillin") || strings.Contains(history, "penicillin") {
		t.Fatalf("the row holds clinical values in plain: blood %q allergies %q sealed %q history %q", blood, allergies, sealed, history)
	}
	if err := persistence.OpenClinical(k, got); err != nil {
		t.Fatalf("OpenClinical = %v", err)
	}
	if d := cmp.Diff(p, got.Record, protocmp.Transform()); d != "" {
		t.Fatalf("LoadPatient round trip (-want +got):\n%s", d)
	}
	if string(got.Fingerprint) != "fingerprint" {
		t.Fatalf("fingerprint = %q", got.Fingerprint)
	}

	next := proto.Clone(p).(*messages.PatientRecord)
	next.Phone, next.Allergies, next.Version = "", nil, 2
	if err := db.UpdatePatient(ctx, f, k, p, next, &messages.PatientUpdated{Patient: next}); err != nil {
		t.Fatalf("UpdatePatient = %v", err)
	}
	got, _, err = db.LoadPatient(ctx, p.Id, "node-a")
	if err == nil {
		err = persistence.OpenClinical(k, got)
	}
	if err != nil {
		t.Fatal(err)
	}
	hist, err := db.ClinicalHistory(ctx, k, p.Id, 0, 10)
	if err != nil || len(hist) != 2 || len(hist[0].Allergies) != 0 || hist[1].Allergies[0].Substance != "penicillin" || hist[1].BloodType != p.BloodType.Name() {
		t.Fatalf("ClinicalHistory = %+v, %v; want the change and the registration", hist, err)
	}
	if d := cmp.Diff(next, got.Record, protocmp.Transform()); d != "" {
		t.Fatalf("after update (-want +got):\n%s", d)
	}
	evs, err := db.OutboxEvents(ctx, persistence.PatientKind, p.Id)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].EventType != "caregrid.v1.PatientRegistered" || evs[1].EventType != "caregrid.v1.PatientUpdated" {
		t.Fatalf("outbox = %+v, want registered then updated", evs)
	}
}

func TestLoadUnknownPatientClaimsNothing(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	sp, f, err := db.LoadPatient(ctx, uuid.NewString(), "node-a")
	if err != nil || sp != nil || f != (persistence.Fence{}) {
		t.Fatalf("LoadPatient(unknown) = %v, %v, %v; want nothing", sp, f, err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM grain_owner`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("grain_owner rows = %d, %v; want 0", n, err)
	}
}

func TestDuplicateIDNPNamesExistingPatient(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	first := newPatient()
	if _, _, err := db.RegisterPatient(ctx, "a", testMaster(t), first, nil, &messages.PatientRegistered{}); err != nil {
		t.Fatal(err)
	}
	second := newPatient()
	_, _, err := db.RegisterPatient(ctx, "a", testMaster(t), second, nil, &messages.PatientRegistered{})
	var taken *persistence.IDNPTakenError
	if !errors.As(err, &taken) || taken.ExistingID != first.Id {
		t.Fatalf("RegisterPatient(same idnp) = %v, want IDNPTakenError{%s}", err, first.Id)
	}
	// The same id with an IDNP nobody holds: only the id is taken.
	sameID := proto.Clone(first).(*messages.PatientRecord)
	sameID.Idnp = "0010000000001"
	_, _, err = db.RegisterPatient(ctx, "a", testMaster(t), sameID, nil, &messages.PatientRegistered{})
	if !errors.Is(err, persistence.ErrPatientExists) || errors.Is(err, persistence.ErrIDNPTaken) {
		t.Fatalf("RegisterPatient(same id, new idnp) = %v, want ErrPatientExists", err)
	}
	evs, err := db.OutboxEvents(ctx, persistence.PatientKind, second.Id)
	if err != nil || len(evs) != 0 {
		t.Fatalf("a refused registration left %d outbox events (%v)", len(evs), err)
	}
	evs, err = db.OutboxEvents(ctx, persistence.PatientKind, first.Id)
	if err != nil || len(evs) != 1 {
		t.Fatalf("the first patient has %d outbox events (%v), want its registration only", len(evs), err)
	}
	if got, err := db.PatientIDByIDNP(ctx, sameID.Idnp); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("the refused registration's IDNP names %q (%v), want nobody", got, err)
	}
}

func TestStaleActivationIsFenced(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	p := newPatient()
	_, k, err := db.RegisterPatient(ctx, "a", testMaster(t), p, nil, &messages.PatientRegistered{})
	if err != nil {
		t.Fatal(err)
	}
	_, old, err := db.LoadPatient(ctx, p.Id, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, live, err := db.LoadPatient(ctx, p.Id, "b") // a second activation takes over
	if err != nil {
		t.Fatal(err)
	}
	if live.Epoch <= old.Epoch {
		t.Fatalf("second claim epoch %d, want > %d", live.Epoch, old.Epoch)
	}
	stale := proto.Clone(p).(*messages.PatientRecord)
	stale.GivenName, stale.Version = "Stale", 2
	if err := db.UpdatePatient(ctx, old, k, p, stale, &messages.PatientUpdated{}); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("UpdatePatient(stale) = %v, want ErrFenced", err)
	}
	fresh := proto.Clone(p).(*messages.PatientRecord)
	fresh.GivenName, fresh.Version = "Live", 2
	if err := db.UpdatePatient(ctx, live, k, p, fresh, &messages.PatientUpdated{}); err != nil {
		t.Fatalf("UpdatePatient(live) = %v", err)
	}
	got, _, _ := db.LoadPatient(ctx, p.Id, "c")
	if got.Record.GivenName != "Live" {
		t.Fatalf("given name = %q, want the live activation's write", got.Record.GivenName)
	}
	evs, _ := db.OutboxEvents(ctx, persistence.PatientKind, p.Id)
	if len(evs) != 2 {
		t.Fatalf("outbox has %d events, want 2 (the stale write left none)", len(evs))
	}
}

func TestAuditAppendIsFencedAndChainKeyed(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	f, err := db.Claim(ctx, persistence.AuditKind, "shard-0", "a")
	if err != nil {
		t.Fatal(err)
	}
	row := persistence.AuditRow{Shard: 0, Seq: 1, OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
		Action: "read", PatientID: "p1", Outcome: "success", PrevHash: []byte{}, Hash: []byte{1}}
	if err := db.AppendAudit(ctx, f, []persistence.AuditRow{row}); err != nil {
		t.Fatalf("AppendAudit = %v", err)
	}
	if err := db.AppendAudit(ctx, f, []persistence.AuditRow{row}); err == nil {
		t.Fatal("AppendAudit(same seq) succeeded: the chain forked")
	}
	if _, err := db.Claim(ctx, persistence.AuditKind, "shard-0", "b"); err != nil {
		t.Fatal(err)
	}
	row.Seq = 2
	if err := db.AppendAudit(ctx, f, []persistence.AuditRow{row}); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("AppendAudit(stale) = %v, want ErrFenced", err)
	}
	seq, hash, err := db.AuditHead(ctx, 0)
	if err != nil || seq != 1 || len(hash) != 1 {
		t.Fatalf("AuditHead = %d, %x, %v; want 1", seq, hash, err)
	}
	got, err := db.PatientAuditEvents(ctx, "p1", persistence.AuditWindow{}, 10)
	if err != nil || len(got) != 1 || got[0].Action != "read" || !got[0].OccurredAt.Equal(row.OccurredAt) {
		t.Fatalf("PatientAuditEvents = %+v, %v", got, err)
	}
}

// A patient's access log is newest first, bounded by from (inclusive) and
// to (exclusive), and pages with a cursor without skipping an event that
// shares its instant with another.
func TestAccessLogIsNewestFirstWithinItsWindow(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	f, err := db.Claim(ctx, persistence.AuditKind, "shard-0", "a")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	var rows []persistence.AuditRow
	for i, minute := range []int{0, 10, 10, 20, 30} { // two events share 09:10
		rows = append(rows, persistence.AuditRow{Shard: 0, Seq: int64(i + 1), OccurredAt: base.Add(time.Duration(minute) * time.Minute),
			Action: fmt.Sprintf("a%d", i+1), PatientID: "p1", Outcome: "success", PrevHash: []byte{}, Hash: []byte{byte(i)}})
	}
	if err := db.AppendAudit(ctx, f, rows); err != nil {
		t.Fatal(err)
	}
	actions := func(got []persistence.AuditRow) string {
		var s []string
		for _, r := range got {
			s = append(s, r.Action)
		}
		return strings.Join(s, ",")
	}
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name string
		w    persistence.AuditWindow
		want string
	}{
		{"everything", persistence.AuditWindow{}, "a5,a4,a3,a2,a1"},
		{"from is inclusive", persistence.AuditWindow{From: at(10)}, "a5,a4,a3,a2"},
		{"to is exclusive", persistence.AuditWindow{To: at(20)}, "a3,a2,a1"},
		{"both", persistence.AuditWindow{From: at(10), To: at(30)}, "a4,a3,a2"},
		{"empty", persistence.AuditWindow{From: at(31)}, ""},
	} {
		got, err := db.PatientAuditEvents(ctx, "p1", tc.w, 10)
		if err != nil || actions(got) != tc.want {
			t.Errorf("%s: %s (%v), want %s", tc.name, actions(got), err, tc.want)
		}
	}
	// Pages of two, through the shared instant.
	var all []string
	w := persistence.AuditWindow{}
	for range 4 {
		got, err := db.PatientAuditEvents(ctx, "p1", w, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		all = append(all, actions(got))
		last := got[len(got)-1]
		w.Before = &persistence.AuditCursor{OccurredAt: last.OccurredAt, Shard: last.Shard, Seq: last.Seq}
	}
	if strings.Join(all, "|") != "a5,a4|a3,a2|a1" {
		t.Fatalf("pages %v", all)
	}
}
