package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/google/uuid"
)

// A patient's record with one of everything, as a doctor who treats them
// and the desk would make it; the words each part carries, to look for in
// exports and, after an erasure, anywhere.
type fullRecord struct {
	patient, doctor, visit, document string
	prescription, emergencyDoctor    string
	pdf                              []byte
	words                            []string // personal and clinical words the record holds
}

func recordWithEverything(t *testing.T, s *testServer) fullRecord {
	t.Helper()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doctor := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctor)
	body := clinicalPatientBody(nextIDNP())
	body["given_name"], body["family_name"], body["email"] = "Zinovia", "Erasmusova", "zinovia.erasmusova@example.md"
	r := s.do("POST", "/v1/patients", doc, body)
	expect(t, "register with clinical data", r, 201)
	rec := fullRecord{patient: r.json(t)["id"].(string), doctor: doctor}
	rec.words = []string{"Zinovia", "Erasmusova", body["idnp"].(string), "zinovia.erasmusova@example.md", "ibuprofen",
		"Quincke-oedema-marker", "K35.8", "Pneumovax-lot-77", "Amoxicillin", "fell down the stairs, unconscious"}
	book := map[string]any{"doctor_id": doctor, "patient_id": rec.patient, "start": rfc(localDay(t, 1)), "duration_minutes": 15, "reason": "abdominal pain"}
	expect(t, "book", s.do("POST", "/v1/appointments", desk, book), 201)
	r = s.do("POST", "/v1/patients/"+rec.patient+"/visits", doc, map[string]any{"occurred_at": rfc(time.Now().Add(-time.Hour)),
		"reason": "abdominal pain", "notes": "Quincke-oedema-marker",
		"diagnoses": []map[string]string{{"code": "K35.8", "text": "acute appendicitis"}}})
	expect(t, "visit", r, 201)
	rec.visit = r.json(t)["id"].(string)
	expect(t, "vaccination", s.do("POST", "/v1/patients/"+rec.patient+"/vaccinations", doc, map[string]any{"atc_code": "J07AL02",
		"vaccine_name": "Pneumococcal", "date": time.Now().Format(time.DateOnly), "dose_number": 1, "lot": "Pneumovax-lot-77"}), 201)
	r = s.do("POST", "/v1/prescriptions", doc, prescriptionBody(rec.patient, "J01CA04", "Amoxicillin"))
	expect(t, "prescription", r, 201)
	rec.prescription = r.json(t)["id"].(string)
	rec.pdf = []byte("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\nOperation report: Erasmusova\n%%EOF\n")
	b, ctype := upload(t, "Operation report", rec.pdf, "application/pdf")
	r = s.do("POST", "/v1/patients/"+rec.patient+"/documents", doc, b, "Content-Type", ctype)
	expect(t, "document", r, 201)
	rec.document = r.json(t)["id"].(string)
	// Another doctor breaks the glass.
	rec.emergencyDoctor = workingDoctor(t, s)
	other := s.token(messages.Role_ROLE_DOCTOR, rec.emergencyDoctor)
	expect(t, "emergency access", s.do("POST", "/v1/patients/"+rec.patient+"/emergency-access", other,
		map[string]any{"reason": "fell down the stairs, unconscious"}), 201)
	return rec
}

// TestExportHoldsEverythingOnce: a patient's export holds every kind of
// record, decrypted (documents as uploaded), the consents and the access
// log with what verifies it offline; its link works once; a changed log
// entry fails the check.
func TestExportHoldsEverythingOnce(t *testing.T) {
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.AuditCheckpointEvery = 50 * time.Millisecond })
	ctx := context.Background()
	rec := recordWithEverything(t, s)
	self := s.token(messages.Role_ROLE_PATIENT, rec.patient)
	doc := s.token(messages.Role_ROLE_DOCTOR, rec.doctor)
	expect(t, "a doctor asks for the patient's export", s.do("POST", "/v1/patients/"+rec.patient+"/exports", doc, nil), 403)
	// The emergency access opens the prescriptions too, to the doctor who broke the glass only.
	expect(t, "a prescription read in the emergency", s.do("GET", "/v1/prescriptions/"+rec.prescription,
		s.token(messages.Role_ROLE_DOCTOR, rec.emergencyDoctor), nil), 200)
	expect(t, "a prescription read by a doctor without access", s.do("GET", "/v1/prescriptions/"+rec.prescription,
		s.token(messages.Role_ROLE_DOCTOR, workingDoctor(t, s)), nil), 403)
	expect(t, "an unknown language", s.do("POST", "/v1/patients/"+rec.patient+"/exports", self, map[string]any{"language": "de"}), 422)
	await.Until(t, "a checkpoint to sign the chains", 10*time.Second, func() bool {
		var n int
		return s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints`).Scan(&n) == nil && n > 0
	})

	r := s.do("POST", "/v1/patients/"+rec.patient+"/exports", self, map[string]any{"language": "ro"})
	expect(t, "export", r, 202)
	started := r.json(t)
	link, status := started["download_url"].(string), r.header.Get("Location")
	if !strings.HasPrefix(link, "/v1/exports/") || status != "/v1/patients/"+rec.patient+"/exports/"+started["id"].(string) {
		t.Fatalf("export answer %s, Location %q", r.body, status)
	}
	if r := s.do("POST", "/v1/patients/"+rec.patient+"/exports", self, nil); r.status != 409 && r.status != 202 {
		t.Fatalf("a second export while the first is made = %d %s", r.status, r.body)
	}
	await.Until(t, "the export to be ready", 30*time.Second, func() bool {
		r := s.do("GET", status, self, nil)
		return r.status == 200 && r.json(t)["state"] == "ready"
	})
	expect(t, "another patient reads its progress", s.do("GET", status, s.token(messages.Role_ROLE_PATIENT, registerPatient(t, s)), nil), 403)
	u, _ := url.Parse(link)
	bad := u.Path + "?token=" + strings.Repeat("x", 43)
	expect(t, "a wrong token", s.do("GET", bad, "", nil), 404)

	r = s.do("GET", link, "", nil) // no bearer token: the link is the credential
	expect(t, "download", r, 200)
	if r.header.Get("Content-Type") != "application/zip" {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	expect(t, "the link again", s.do("GET", link, "", nil), 410)

	z, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range z.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	for name, want := range map[string][]string{
		"patient.json":          {"Zinovia", "ibuprofen", `"blood_type": "BLOOD_TYPE_B_NEG"`},
		"visits.json":           {"Quincke-oedema-marker", "K35.8", "acute appendicitis"},
		"vaccinations.json":     {"Pneumovax-lot-77", "J07AL02"},
		"prescriptions.json":    {"Amoxicillin", "Review mood in four weeks."},
		"appointments.json":     {"abdominal pain"},
		"clinical-history.json": {"ibuprofen", `"blood_type": "BLOOD_TYPE_B_NEG"`, `"changed_by"`},
		"documents.json":        {"Operation report"},
		"consents.json":         {`"reason": "fell down the stairs, unconscious"`, `"emergency_accesses"`, `"doctor_id"`, `"erasure_requests"`},
		"access-log.json":       {`"action": "export"`, `"action": "emergency-access"`},
		"README.txt":            {"Tot ce păstrează caregrid despre dumneavoastră", "access-log.json"},
	} {
		got, ok := files[name]
		if !ok {
			t.Errorf("the export has no %s (it has %d files)", name, len(files))
			continue
		}
		for _, w := range want {
			if !bytes.Contains(got, []byte(w)) {
				t.Errorf("%s lacks %q:\n%.600s", name, w, got)
			}
		}
	}
	if bytes.Contains(files["consents.json"], []byte("Sealed")) || bytes.Contains(files["consents.json"], []byte("ReasonSealed")) {
		t.Errorf("consents.json carries sealed values: %s", files["consents.json"])
	}
	if got := files["documents/"+rec.document+".pdf"]; !bytes.Equal(got, rec.pdf) {
		t.Errorf("the document in the export is %q, want what was uploaded", got)
	}

	// The access log verifies offline, with the export's keys and with the
	// published ones; an entry changed after the fact does not.
	path := filepath.Join(t.TempDir(), "export.zip")
	if err := os.WriteFile(path, r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyExport(path, "")
	if err != nil || rep.Entries < 10 || rep.Checkpoints < 1 {
		t.Fatalf("verify the export: %+v, %v; want every entry and a checkpoint", rep, err)
	}
	keys := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keys, s.do("GET", "/.well-known/caregrid-audit-keys", "", nil).body, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyExport(path, keys); err != nil {
		t.Fatalf("verify against the published keys: %v", err)
	}
	var l audit.ExportedLog
	if err := json.Unmarshal(files["access-log.json"], &l); err != nil {
		t.Fatal(err)
	}
	l.Entries[0].Subject = "someone-else"
	if _, err := audit.VerifyExported(l, nil); err == nil {
		t.Fatal("a changed entry verified")
	}
	l.Entries[0].Subject = files2subject(t, files["access-log.json"])
	l.Checkpoints[0].Seq++
	if _, err := audit.VerifyExported(l, nil); err == nil {
		t.Fatal("a changed checkpoint verified")
	}

	// The export and its download are in the patient's access log.
	r = s.do("GET", "/v1/patients/"+rec.patient+"/access-log?limit=500", self, nil)
	expect(t, "access log", r, 200)
	for _, a := range []string{`"action":"export"`, `"action":"download-export"`} {
		if !strings.Contains(string(r.body), a) {
			t.Errorf("the access log lacks %s", a)
		}
	}
	// The archive's blob goes once it is downloaded.
	await.Until(t, "the downloaded export's blob to be deleted", 10*time.Second, func() bool {
		var left int
		return s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM patient_exports WHERE blob_key IS NOT NULL`).Scan(&left) == nil && left == 0
	})
}

// files2subject is the first entry's subject as exported.
func files2subject(t *testing.T, b []byte) string {
	var l audit.ExportedLog
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return l.Entries[0].Subject
}

func registerPatient(t *testing.T, s *testServer) string {
	t.Helper()
	r := s.do("POST", "/v1/patients", s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1"), patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	return r.json(t)["id"].(string)
}

// TestErasureByCryptoShredding: a patient's erasure waits for review, then
// for the retention periods and the legal hold; once carried out, the data
// key is gone, so the sealed values read before cannot be opened, every row
// and blob of the patient is gone, the audit trail still verifies, and its
// rows about the patient hold ids, no personal data.
func TestErasureByCryptoShredding(t *testing.T) {
	var skew atomic.Int64 // how far the grains' and sweeps' clock is ahead
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := context.Background()
	rec := recordWithEverything(t, s)
	self := s.token(messages.Role_ROLE_PATIENT, rec.patient)
	admin := s.token(messages.Role_ROLE_ADMIN, "privacy-officer")
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	var sealedReason, blobKey string
	if err := s.db.Pool.QueryRow(ctx, `SELECT encode(reason_sealed, 'hex') FROM visits WHERE id = $1`, rec.visit).Scan(&sealedReason); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Pool.QueryRow(ctx, `SELECT blob_key FROM documents WHERE id = $1`, rec.document).Scan(&blobKey); err != nil {
		t.Fatal(err)
	}
	key, err := s.db.DataKey(ctx, testMaster, rec.patient)
	if err != nil {
		t.Fatal(err)
	}
	_ = key // the key exists now; after the erasure it is nowhere

	expect(t, "a doctor places a legal hold", s.do("PUT", "/v1/patients/"+rec.patient+"/legal-hold", s.token(messages.Role_ROLE_DOCTOR, rec.doctor),
		map[string]any{"reason": "court order 12/2026"}), 403)
	expect(t, "a legal hold", s.do("PUT", "/v1/patients/"+rec.patient+"/legal-hold", admin, map[string]any{"reason": "court order 12/2026"}), 200)
	expect(t, "the doctor asks for the erasure", s.do("POST", "/v1/patients/"+rec.patient+"/erasure-requests", s.token(messages.Role_ROLE_DOCTOR, rec.doctor), nil), 403)
	r := s.do("POST", "/v1/patients/"+rec.patient+"/erasure-requests", self, nil)
	expect(t, "the patient asks for erasure", r, 201)
	erasure := r.json(t)["id"].(string)
	if r := s.do("POST", "/v1/patients/"+rec.patient+"/erasure-requests", desk, nil); r.status != 200 || r.json(t)["id"] != erasure {
		t.Fatalf("asking again = %d %s, want the open request", r.status, r.body)
	}
	// Pending: nothing happens until the review.
	time.Sleep(500 * time.Millisecond) // a few sweeps (every 200 ms in tests)
	expect(t, "the record while the erasure is pending", s.do("GET", "/v1/patients/"+rec.patient, self, nil), 200)
	r = s.do("GET", "/v1/erasure-requests", admin, nil)
	expect(t, "review queue", r, 200)
	if !strings.Contains(string(r.body), erasure) || !strings.Contains(string(r.body), `"patient_name":"Zinovia Erasmusova"`) {
		t.Fatalf("the request is not in the queue: %s", r.body)
	}
	for _, q := range []string{"?status=bogus", "?limit=0", "?limit=201", "?cursor=nonsense"} {
		expect(t, "the review queue with "+q, s.do("GET", "/v1/erasure-requests"+q, admin, nil), 400)
	}
	expect(t, "the review queue as the desk", s.do("GET", "/v1/erasure-requests", desk, nil), 403)
	expect(t, "refuse without a note", s.do("POST", "/v1/erasure-requests/"+erasure, admin, map[string]any{"decision": "refuse"}), 422)
	expect(t, "approve", s.do("POST", "/v1/erasure-requests/"+erasure, admin, map[string]any{"decision": "approve", "note": "identity checked at the desk"}), 200)
	expect(t, "approve again", s.do("POST", "/v1/erasure-requests/"+erasure, admin, map[string]any{"decision": "approve"}), 409)

	latest := func() map[string]any {
		r := s.do("GET", "/v1/patients/"+rec.patient+"/erasure-requests/latest", self, nil)
		expect(t, "latest erasure request", r, 200)
		return r.json(t)
	}
	// The clinical records are within their retention period (25 years).
	await.Until(t, "the erasure to wait for the retention period", 10*time.Second, func() bool { return latest()["blocked_by"] == "retention" })
	until, err := time.Parse(time.RFC3339Nano, latest()["retain_until"].(string))
	if err != nil || until.Before(time.Now().AddDate(24, 11, 0)) {
		t.Fatalf("retain_until %v (%v), want 25 years on", until, err)
	}
	// 26 years later, the legal hold still stands.
	skew.Store(int64(time.Until(time.Now().AddDate(26, 0, 0))))
	await.Until(t, "the erasure to wait for the legal hold", 10*time.Second, func() bool { return latest()["blocked_by"] == "legal-hold" })
	expect(t, "lift the hold", s.do("DELETE", "/v1/patients/"+rec.patient+"/legal-hold", admin, nil), 204)

	var erased map[string]any
	await.Until(t, "the erasure to be carried out", 10*time.Second, func() bool {
		r := s.do("GET", "/v1/erasure-requests?status=erased", admin, nil)
		var out struct {
			ErasureRequests []map[string]any `json:"erasure_requests"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &out) != nil || len(out.ErasureRequests) != 1 {
			return false
		}
		erased = out.ErasureRequests[0]
		return true
	})
	proof := erased["proof"].(map[string]any)
	deleted := proof["deleted"].(map[string]any)
	if erased["id"] != erasure || proof["data_key_sha256"] == "" || deleted["visits"] != 1.0 || deleted["documents"] != 1.0 ||
		deleted["vaccinations"] != 1.0 || deleted["prescriptions"] != 1.0 || proof["audit_rows_kept"].(float64) < 10 {
		t.Fatalf("proof of erasure = %v", erased)
	}

	// The key is gone: what was sealed with it opens nowhere.
	if _, err := s.db.PatientKey(ctx, rec.patient); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the patient's data key = %v, want gone", err)
	}
	if strings.Contains(sealedReason, "6162646f6d696e616c") { // "abdominal" in hex
		t.Fatal("the visit's reason was stored in the clear")
	}
	for _, table := range []string{"patients", "patient_keys", "visits", "diagnoses", "vaccinations", "prescriptions", "documents",
		"patient_clinical_history", "emergency_access", "patient_search", "patient_words", "patient_exports", "legal_holds"} {
		col := "patient_id"
		if table == "patients" {
			col = "id"
		}
		var n int
		if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE `+col+` = $1`, rec.patient).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s holds %d rows of the erased patient (%v)", table, n, err)
		}
	}
	var outbox, reasons int
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE aggregate_id = $1::TEXT`, rec.patient).Scan(&outbox); err != nil || outbox != 0 {
		t.Errorf("the outbox holds %d events about the erased patient (%v)", outbox, err)
	}
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE patient_id = $1 AND reason <> ''`, rec.patient).Scan(&reasons); err != nil || reasons != 0 {
		t.Errorf("%d appointments keep their reason (%v)", reasons, err)
	}
	// The blob goes after the erasure's transaction has committed.
	await.Until(t, "the document's blob to be deleted", 10*time.Second, func() bool {
		_, err := (blob.Dir{Root: s.blobs}).Get(ctx, blobKey)
		return errors.Is(err, blob.ErrNotFound)
	})
	expect(t, "the record", s.do("GET", "/v1/patients/"+rec.patient, admin, nil), 404)
	// The prescription's grain held it in memory: it forgets it too.
	expect(t, "the prescription, with a token from before", s.do("GET", "/v1/prescriptions/"+rec.prescription, self, nil), 404)

	// The audit trail is whole, and its rows about the patient carry ids:
	// not the name, the IDNP, the email, an allergy, a code, a reason.
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err != nil {
		t.Fatalf("audit verify after the erasure: %v", err)
	}
	rows, err := s.db.PatientAuditRows(ctx, rec.patient)
	if err != nil || len(rows) < 10 {
		t.Fatalf("%d audit rows of the erased patient (%v), want them kept", len(rows), err)
	}
	for _, row := range rows {
		all := strings.Join([]string{row.Subject, row.Role, row.Client, row.PurposeOfUse, row.BreakGlassReason, row.RequestID,
			row.SourceAddress, row.Action, row.ResourceType, row.ResourceID, row.PatientID, row.Outcome, row.Detail}, "|")
		for _, w := range rec.words {
			if strings.Contains(strings.ToLower(all), strings.ToLower(w)) {
				t.Errorf("an audit row of the erased patient holds %q: %s", w, all)
			}
		}
	}
	var leaks int
	for _, w := range rec.words {
		var n int
		if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE position($1::BYTEA IN payload) > 0`, []byte(w)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		leaks += n
	}
	if leaks != 0 {
		t.Errorf("%d outbox events still hold the erased patient's words", leaks)
	}
}

// TestRetentionSweepSparesTheHeld: records past their retention period go,
// with their blobs, except under a legal hold; newer ones stay.
func TestRetentionSweepSparesTheHeld(t *testing.T) {
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.RetentionSweep = 200 * time.Millisecond })
	ctx := context.Background()
	admin := s.token(messages.Role_ROLE_ADMIN, "privacy-officer")
	free, held := recordWithEverything(t, s), recordWithEverything(t, s)
	expect(t, "a legal hold", s.do("PUT", "/v1/patients/"+held.patient+"/legal-hold", admin, map[string]any{"reason": "litigation"}), 200)
	for _, rec := range []fullRecord{free, held} {
		// The visit and the document are 30 years old.
		if _, err := s.db.Pool.Exec(ctx, `UPDATE visits SET occurred_at = occurred_at - INTERVAL '30 years' WHERE patient_id = $1`, rec.patient); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Pool.Exec(ctx, `UPDATE documents SET created_at = created_at - INTERVAL '30 years' WHERE patient_id = $1`, rec.patient); err != nil {
			t.Fatal(err)
		}
	}
	count := func(table, patient string) int {
		var n int
		if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE patient_id = $1`, patient).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var freeBlob string
	if err := s.db.Pool.QueryRow(ctx, `SELECT blob_key FROM documents WHERE patient_id = $1`, free.patient).Scan(&freeBlob); err != nil {
		t.Fatal(err)
	}
	await.Until(t, "the sweep to delete the old visit and document", 10*time.Second, func() bool {
		return count("visits", free.patient) == 0 && count("documents", free.patient) == 0
	})
	// The blob goes after the rows' transaction has committed.
	await.Until(t, "the expired document's blob to be deleted", 10*time.Second, func() bool {
		_, err := (blob.Dir{Root: s.blobs}).Get(ctx, freeBlob)
		return errors.Is(err, blob.ErrNotFound)
	})
	time.Sleep(600 * time.Millisecond) // a few more sweeps
	if count("visits", held.patient) != 1 || count("documents", held.patient) != 1 {
		t.Fatal("the sweep deleted records under a legal hold")
	}
	if count("vaccinations", free.patient) != 1 || count("prescriptions", free.patient) != 1 {
		t.Fatal("the sweep deleted records within their period")
	}
	r := s.do("GET", "/v1/patients/"+free.patient+"/access-log?limit=500", s.token(messages.Role_ROLE_PATIENT, free.patient), nil)
	if !strings.Contains(string(r.body), `"action":"apply-retention"`) {
		t.Errorf("the retention is not in the patient's access log: %.400s", r.body)
	}
}

// TestReapplyErasuresAfterARestore: a restored backup brings back a
// patient erased since; 'caregrid admin reapply-erasures' with the list of
// erasures kept beside the backups erases them again, whatever the backup
// holds (a legal hold lifted since), once, with an audit event, and
// 'caregrid admin erasures' lists it for the next restore.
func TestReapplyErasuresAfterARestore(t *testing.T) {
	s := startTestServerWithIdentity(t, nil, nil)
	ctx := context.Background()
	rec := recordWithEverything(t, s)
	admin := s.token(messages.Role_ROLE_ADMIN, "privacy-officer")
	expect(t, "a legal hold the backup still holds", s.do("PUT", "/v1/patients/"+rec.patient+"/legal-hold", admin, map[string]any{"reason": "court order 12/2026"}), 200)
	var blobKey string
	if err := s.db.Pool.QueryRow(ctx, `SELECT blob_key FROM documents WHERE id = $1`, rec.document).Scan(&blobKey); err != nil {
		t.Fatal(err)
	}
	// What was kept beside the backups: an erasure carried out after it.
	list := []erasedJSON{{ID: uuid.NewString(), PatientID: rec.patient, State: persistence.ErasureErased, RequestedBy: rec.patient,
		RequestedAt: time.Now().UTC().Add(-time.Hour), ReviewedBy: "privacy-officer"}}
	var out bytes.Buffer
	n, err := reapplyErasures(ctx, s.db, list, audit.Recorder{}, blob.Dir{Root: s.blobs}, &out)
	if err != nil || n != 1 {
		t.Fatalf("reapply = %d, %v (%s); want the patient erased again", n, err, out.String())
	}
	for _, table := range []string{"patient_keys", "visits", "documents", "legal_holds"} {
		var left int
		if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE patient_id = $1`, rec.patient).Scan(&left); err != nil || left != 0 {
			t.Errorf("%s holds %d rows of the patient erased again (%v)", table, left, err)
		}
	}
	if _, err := (blob.Dir{Root: s.blobs}).Get(ctx, blobKey); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("the document's blob = %v, want deleted", err)
	}
	var rows int
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM patients WHERE id = $1`, rec.patient).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the patient row = %d (%v), want gone", rows, err)
	}
	await.Until(t, "the erasure's audit event to be chained", 10*time.Second, func() bool {
		var n int
		return s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE patient_id = $1 AND action = 'erase'`, rec.patient).Scan(&n) == nil && n == 1
	})
	if n, err := reapplyErasures(ctx, s.db, list, audit.Recorder{}, nil, &out); err != nil || n != 0 {
		t.Fatalf("reapply again = %d, %v; want nothing left to do", n, err)
	}
	out.Reset()
	if err := printErasures(ctx, s.db, &out); err != nil {
		t.Fatal(err)
	}
	var printed erasureList
	if err := json.Unmarshal(out.Bytes(), &printed); err != nil || len(printed.ErasureRequests) != 1 || printed.ErasureRequests[0].PatientID != rec.patient {
		t.Fatalf("admin erasures = %s (%v)", out.String(), err)
	}
}
