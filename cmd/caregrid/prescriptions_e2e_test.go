package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
)

// treatedPatient registers a patient and puts doctorID on their care team.
func treatedPatient(t *testing.T, s *testServer, doctorID string) string {
	t.Helper()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)
	expect(t, "care team", s.do("PUT", "/v1/patients/"+id+"/care-team/"+doctorID, desk, nil), 200)
	return id
}

func medication(atc, name string) map[string]string {
	return map[string]string{"atc_code": atc, "name": name, "strength": "20 mg", "form": "tablet"}
}

func prescriptionBody(patientID, atc, name string) map[string]any {
	return map[string]any{"patient_id": patientID, "medication": medication(atc, name), "dose": "1 tablet", "route": "oral",
		"frequency": "once daily", "duration_days": 30, "refills": 1, "notes": "Review mood in four weeks."}
}

type prescriptionView struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	Notes          string `json:"notes"`
	OverrideReason string `json:"override_reason"`
	RefillsLeft    int    `json:"refills_left"`
	Warnings       []struct {
		Kind string `json:"kind"`
	} `json:"warnings"`
	Dispenses []struct {
		Number int `json:"number"`
	} `json:"dispenses"`
	EndedAt   string `json:"ended_at"`
	ExpiresAt string `json:"expires_at"`
}

func decodePrescription(t *testing.T, r response) prescriptionView {
	t.Helper()
	var p prescriptionView
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("prescription %s: %v", r.body, err)
	}
	return p
}

func TestHTTPPrescriptionsWithInteractionAndAllergyChecks(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	otherDoc := s.token(messages.Role_ROLE_DOCTOR, workingDoctor(t, s))
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	pharmacy := s.token(messages.Role_ROLE_SERVICE, "pharmacy-1")
	id := treatedPatient(t, s, doctorID)
	self := s.token(messages.Role_ROLE_PATIENT, id)
	strangerPatient := s.token(messages.Role_ROLE_PATIENT, treatedPatient(t, s, doctorID))

	// The doctor records a penicillin allergy, coded by class.
	r := s.do("GET", "/v1/patients/"+id, doc, nil)
	expect(t, "read", r, 200)
	allergy := map[string]any{"allergies": []map[string]string{{"substance": "penicillins", "atc_code": "j01c", "severity": "moderate", "reaction": "hives"}}}
	r = s.do("PATCH", "/v1/patients/"+id, doc, allergy, "If-Match", r.header.Get("ETag"))
	expect(t, "record the allergy", r, 200)
	if got := r.json(t)["allergies"].([]any)[0].(map[string]any)["atc_code"]; got != "J01C" {
		t.Fatalf("allergy atc_code = %v", got)
	}

	const rx = "/v1/prescriptions"
	fluox := prescriptionBody(id, "N06AB03", "Fluoxetine")
	expect(t, "a doctor who does not treat the patient", s.do("POST", rx, otherDoc, fluox), 403)
	expect(t, "a receptionist", s.do("POST", rx, desk, fluox), 403)
	expect(t, "the patient", s.do("POST", rx, self, fluox), 403)
	bad := prescriptionBody(id, "N06A", "")
	bad["duration_days"], bad["refills"] = 0, 40
	r = s.do("POST", rx, doc, bad)
	expect(t, "a malformed prescription", r, 422)
	if got := problemFields(t, r); got != "/problems/validation duration_days,medication.atc_code,medication.name,refills" {
		t.Fatalf("problem = %s", got)
	}

	r = s.do("POST", rx, doc, fluox, "Idempotency-Key", "rx-1")
	expect(t, "prescribe fluoxetine", r, 201)
	first := decodePrescription(t, r)
	if first.Status != "active" || len(first.Warnings) != 0 || first.RefillsLeft != 1 || first.Notes != "Review mood in four weeks." ||
		r.header.Get("Location") != rx+"/"+first.ID {
		t.Fatalf("prescription = %s", r.body)
	}
	if replay := s.do("POST", rx, doc, fluox, "Idempotency-Key", "rx-1"); replay.status != 201 || decodePrescription(t, replay).ID != first.ID ||
		replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %s", replay.status, replay.body)
	}
	expect(t, "the key with another prescription", s.do("POST", rx, doc, prescriptionBody(id, "N02BE01", "Paracetamol"), "Idempotency-Key", "rx-1"), 422)

	// Phenelzine (an MAO inhibitor) with fluoxetine: contraindicated (row 4).
	mao := prescriptionBody(id, "N06AF03", "Phenelzine")
	r = s.do("POST", rx, doc, mao)
	expect(t, "an MAO inhibitor on top of an SSRI", r, 409)
	var refused struct {
		Type     string
		Warnings []struct {
			Kind, Severity, Rule string
			Blocking             bool
			Other                string `json:"other_prescription_id"`
		}
	}
	if err := json.Unmarshal(r.body, &refused); err != nil || refused.Type != "/problems/interaction" || len(refused.Warnings) != 1 ||
		refused.Warnings[0].Rule != "4" || refused.Warnings[0].Severity != "contraindicated" || !refused.Warnings[0].Blocking ||
		refused.Warnings[0].Other != first.ID {
		t.Fatalf("refusal = %s", r.body)
	}
	mao["override_reason"] = "Washout impossible: psychiatry consulted, inpatient monitoring."
	r = s.do("POST", rx, doc, mao)
	expect(t, "the same with an override reason", r, 201)
	overridden := decodePrescription(t, r)
	if len(overridden.Warnings) != 1 || overridden.OverrideReason != mao["override_reason"] {
		t.Fatalf("overridden = %s", r.body)
	}

	// Amoxicillin is in the allergy's class; paracetamol meets nothing.
	r = s.do("POST", rx, doc, prescriptionBody(id, "J01CA04", "Amoxicillin"))
	expect(t, "a penicillin for a patient allergic to penicillins", r, 409)
	if !strings.Contains(string(r.body), `"kind":"allergy"`) || !strings.Contains(string(r.body), `"severity":"major"`) {
		t.Fatalf("allergy refusal = %s", r.body)
	}
	r = s.do("POST", rx, doc, prescriptionBody(id, "N02BE01", "Paracetamol"))
	expect(t, "paracetamol", r, 201)
	para := decodePrescription(t, r)
	if len(para.Warnings) != 0 {
		t.Fatalf("paracetamol warned: %s", r.body)
	}

	// Reads: the patient, the treating doctor, a pharmacy; nobody else.
	one := rx + "/" + first.ID
	for name, tok := range map[string]string{"patient": self, "doctor": doc, "pharmacy": pharmacy} {
		if r := s.do("GET", one, tok, nil); r.status != 200 || decodePrescription(t, r).ID != first.ID {
			t.Fatalf("read by %s = %d %s", name, r.status, r.body)
		}
	}
	for name, tok := range map[string]string{"another doctor": otherDoc, "receptionist": desk, "admin": admin, "another patient": strangerPatient} {
		expect(t, "read by "+name, s.do("GET", one, tok, nil), 403)
	}
	expect(t, "an unknown prescription", s.do("GET", rx+"/00000000-0000-4000-8000-000000000000", doc, nil), 404)

	// Dispenses: the first fill and one refill complete it; a retried
	// dispense counts once.
	fill := map[string]string{"quantity": "30 tablets"}
	expect(t, "dispensed by the patient", s.do("POST", one+"/dispense", self, fill), 403)
	expect(t, "dispensed by another doctor", s.do("POST", one+"/dispense", otherDoc, fill), 403)
	r = s.do("POST", one+"/dispense", pharmacy, fill, "Idempotency-Key", "fill-1")
	expect(t, "first fill", r, 200)
	if p := decodePrescription(t, r); len(p.Dispenses) != 1 || p.Status != "active" || p.RefillsLeft != 1 {
		t.Fatalf("after the first fill: %s", r.body)
	}
	r = s.do("POST", one+"/dispense", pharmacy, fill, "Idempotency-Key", "fill-1")
	if p := decodePrescription(t, r); r.status != 200 || len(p.Dispenses) != 1 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retried fill: %d %s", r.status, r.body)
	}
	// The quantity may be a number too.
	r = s.do("POST", one+"/dispense", doc, map[string]any{"quantity": 30})
	expect(t, "the refill", r, 200)
	if p := decodePrescription(t, r); len(p.Dispenses) != 2 || p.Status != "completed" || p.RefillsLeft != 0 || p.EndedAt == "" ||
		!strings.Contains(string(r.body), `"quantity":"30"`) {
		t.Fatalf("after the refill: %s", r.body)
	}
	r = s.do("POST", one+"/dispense", pharmacy, fill)
	expect(t, "a fill beyond the refills", r, 409)
	if !strings.Contains(string(r.body), "/problems/wrong-state") {
		t.Fatalf("refusal = %s", r.body)
	}

	// Cancelling: the treating doctor, with a reason, once.
	cancel := "/v1/prescriptions/" + para.ID + "/cancel"
	expect(t, "cancelled by a receptionist", s.do("POST", cancel, desk, map[string]string{"reason": "x"}), 403)
	r = s.do("POST", cancel, doc, map[string]string{"reason": ""})
	expect(t, "cancelled without a reason", r, 422)
	r = s.do("POST", cancel, doc, map[string]string{"reason": "Pain resolved."})
	expect(t, "cancel", r, 200)
	if !strings.Contains(string(r.body), `"status":"cancelled"`) || !strings.Contains(string(r.body), `"end_reason":"Pain resolved."`) {
		t.Fatalf("cancelled = %s", r.body)
	}
	expect(t, "cancel twice", s.do("POST", cancel, doc, map[string]string{"reason": "again"}), 409)

	// Lists by status.
	count := func(status string) int {
		r := s.do("GET", "/v1/patients/"+id+"/prescriptions?status="+status, self, nil)
		expect(t, "list "+status, r, 200)
		var page struct{ Prescriptions []prescriptionView }
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Prescriptions)
	}
	if a, c, x, all := count("active"), count("completed"), count("cancelled"), count(""); a != 1 || c != 1 || x != 1 || all != 3 {
		t.Fatalf("active %d, completed %d, cancelled %d, all %d", a, c, x, all)
	}
	expect(t, "list by an unknown status", s.do("GET", "/v1/patients/"+id+"/prescriptions?status=paused", self, nil), 400)
	expect(t, "list by a receptionist", s.do("GET", "/v1/patients/"+id+"/prescriptions", desk, nil), 403)
	r = s.do("GET", "/v1/patients/"+id+"/timeline", self, nil)
	if !strings.Contains(string(r.body), `"summary":"Phenelzine 20 mg, active"`) || !strings.Contains(string(r.body), `"summary":"Fluoxetine 20 mg, completed"`) {
		t.Fatalf("timeline = %s", r.body)
	}

	// At rest: notes, override and end reasons are sealed.
	var notes, override, endReason []byte
	if err := s.db.Pool.QueryRow(ctx, `SELECT notes_sealed, override_sealed FROM prescriptions WHERE id = $1`, overridden.ID).Scan(&notes, &override); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Pool.QueryRow(ctx, `SELECT end_reason_sealed FROM prescriptions WHERE id = $1`, para.ID).Scan(&endReason); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"notes": notes, "override": override, "end reason": endReason} {
		if len(b) == 0 || bytes.Contains(b, []byte("mood")) || bytes.Contains(b, []byte("Washout")) || bytes.Contains(b, []byte("Pain")) {
			t.Errorf("%s is not sealed: %q", name, b)
		}
	}

	// The trail: every access, the refusals, and what was overridden.
	r = s.do("GET", "/v1/patients/"+id+"/access-log?limit=500", self, nil)
	var log struct {
		Events []struct{ Action, Outcome, Detail string } `json:"events"`
	}
	if err := json.Unmarshal(r.body, &log); err != nil {
		t.Fatal(err)
	}
	seen, overrides := map[string]int{}, 0
	for _, e := range log.Events {
		seen[e.Action+" "+e.Outcome]++
		if e.Action == "create-prescription" && e.Detail == "override of 1 blocking warnings" {
			overrides++
		}
	}
	for pair, want := range map[string]int{"create-prescription success": 4, "create-prescription denied": 3, "create-prescription failed": 4,
		"read-prescription success": 3, "read-prescription denied": 4, "dispense-prescription success": 3, "dispense-prescription denied": 2,
		"dispense-prescription failed": 1, "cancel-prescription success": 1, "cancel-prescription denied": 1, "cancel-prescription failed": 2,
		"list-prescriptions denied": 1} {
		if seen[pair] != want {
			t.Errorf("access log has %d %q, want %d (all: %v)", seen[pair], pair, want, seen)
		}
	}
	if overrides != 1 {
		t.Errorf("%d audited overrides, want 1", overrides)
	}
}

// Two interacting prescriptions for one patient sent at the same moment:
// the patient's grain checks them one at a time, so exactly one is
// admitted and the other is refused naming it. Repeated on fresh patients
// until eight rounds had both requests in flight at once (each sent before
// either was answered): a round run one after the other proves nothing.
func TestHTTPConcurrentPrescriptionsCannotBothSlipPastTheCheck(t *testing.T) {
	s := startTestServer(t)
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	const wantOverlapping, maxRounds = 8, 40
	overlapping := 0
	for round := 0; overlapping < wantOverlapping; round++ {
		if round == maxRounds {
			t.Fatalf("only %d of %d rounds had both requests in flight at once", overlapping, maxRounds)
		}
		id := treatedPatient(t, s, doctorID)
		bodies := []map[string]any{prescriptionBody(id, "N06AB03", "Fluoxetine"), prescriptionBody(id, "N06AF03", "Phenelzine")}
		statuses, replies := make([]int, 2), make([][]byte, 2)
		sent, answered := make([]time.Time, 2), make([]time.Time, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, b := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, _ := json.Marshal(b)
				req, _ := http.NewRequest("POST", s.base+"/v1/prescriptions", bytes.NewReader(j))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+doc)
				<-start
				sent[i] = time.Now()
				resp, err := http.DefaultClient.Do(req)
				answered[i] = time.Now()
				if err != nil {
					statuses[i] = -1
					return
				}
				defer resp.Body.Close()
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(resp.Body)
				statuses[i], replies[i] = resp.StatusCode, buf.Bytes()
			}()
		}
		close(start)
		wg.Wait()
		if sent[0].Before(answered[1]) && sent[1].Before(answered[0]) {
			overlapping++
		}
		created, refused := -1, -1
		for i, st := range statuses {
			switch st {
			case 201:
				created = i
			case 409:
				refused = i
			}
		}
		if created < 0 || refused < 0 {
			t.Fatalf("round %d: statuses %v (%s | %s), want one 201 and one 409", round, statuses, replies[0], replies[1])
		}
		var p struct{ ID string }
		if err := json.Unmarshal(replies[created], &p); err != nil || p.ID == "" {
			t.Fatalf("round %d: the 201 has no id: %s", round, replies[created])
		}
		if !strings.Contains(string(replies[refused]), fmt.Sprintf(`"other_prescription_id":"%s"`, p.ID)) {
			t.Fatalf("round %d: the refusal does not name the admitted prescription %s: %s", round, p.ID, replies[refused])
		}
		var stored int
		if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM prescriptions WHERE patient_id = $1`, id).Scan(&stored); err != nil || stored != 1 {
			t.Fatalf("round %d: %d prescriptions stored (%v)", round, stored, err)
		}
	}
}

// A prescription's expiry is durable: the node that wrote it is killed,
// its duration ends while no node runs, and a freshly started node expires
// it with no request touching it, from the database alone.
func TestPrescriptionExpirySurvivesANodeRestart(t *testing.T) {
	node, db := startProcess(t, "--prescription-expiry-sweep", "200ms")
	s := &testServer{t: t, db: db, base: node.base, tokens: map[string]string{}}
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	id := treatedPatient(t, s, doctorID)
	short := prescriptionBody(id, "N02BE01", "Paracetamol")
	short["duration_days"] = 1
	r := s.do("POST", "/v1/prescriptions", doc, short)
	expect(t, "a one-day prescription", r, 201)
	due := decodePrescription(t, r).ID
	r = s.do("POST", "/v1/prescriptions", doc, prescriptionBody(id, "C09AA05", "Ramipril"))
	expect(t, "a 30-day prescription", r, 201)
	running := decodePrescription(t, r).ID

	node.kill()
	// While no node runs, the day passes: move the end into the past, as
	// the clock would.
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `UPDATE prescriptions SET expires_at = now() - interval '1 minute' WHERE id = $1`, due); err != nil {
		t.Fatal(err)
	}
	node.start()

	status := func(id string) string {
		var st string
		if err := db.Pool.QueryRow(ctx, `SELECT status FROM prescriptions WHERE id = $1`, id).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	await.Until(t, "the restarted node's sweep to expire the prescription", 30*time.Second, func() bool { return status(due) == "expired" })
	if st := status(running); st != "active" {
		t.Fatalf("the 30-day prescription is %s", st)
	}
	r = s.do("GET", "/v1/prescriptions/"+due, doc, nil)
	expect(t, "read the expired prescription", r, 200)
	if p := decodePrescription(t, r); p.Status != "expired" || p.EndedAt != p.ExpiresAt || p.RefillsLeft != 0 {
		t.Fatalf("expired prescription = %s", r.body)
	}
	expect(t, "dispense an expired prescription", s.do("POST", "/v1/prescriptions/"+due+"/dispense", doc, map[string]string{"quantity": "10 tablets"}), 409)
	// No longer active, it no longer interacts: only the running one is listed.
	r = s.do("GET", "/v1/patients/"+id+"/prescriptions?status=active", doc, nil)
	if !strings.Contains(string(r.body), running) || strings.Contains(string(r.body), due) {
		t.Fatalf("active = %s", r.body)
	}
}
