package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
)

// TestAuditTrailReports: an admin searches the whole trail by patient,
// actor, action, outcome and time, pages through it, downloads it as CSV
// (formula-looking cells defused), and the search itself shows in the
// patient's access log; a check of the trail on demand finds it intact,
// and after a row is changed, broken, which the metrics say too.
func TestAuditTrailReports(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	admin := s.token(messages.Role_ROLE_ADMIN, "admin-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("2005042129809"))
	expect(t, "register", r, 201)
	p1 := r.json(t)["id"].(string)
	r = s.do("POST", "/v1/patients", desk, patientBody("0100000000003"))
	expect(t, "register", r, 201)
	p2 := r.json(t)["id"].(string)
	// The filters take whole seconds: the reads start at the next one.
	before := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(before))
	for range 3 {
		expect(t, "read", s.do("GET", "/v1/patients/"+p1, desk, nil), 200)
	}
	expect(t, "a patient reads another's record", s.do("GET", "/v1/patients/"+p2, s.token(messages.Role_ROLE_PATIENT, p1), nil), 403)

	type page struct {
		Events []struct {
			Subject, SubjectName, Action, Outcome, PatientID string
			OccurredAt                                       string `json:"occurred_at"`
		} `json:"events"`
		NextCursor string `json:"next_cursor"`
	}
	search := func(query string) page {
		t.Helper()
		r := s.do("GET", "/v1/audit-events?"+query, admin, nil)
		expect(t, "search "+query, r, 200)
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got := search("patient=" + p1 + "&action=read&from=" + url.QueryEscape(before.Format(time.RFC3339)))
	if len(got.Events) != 3 || got.Events[0].Subject != subject(messages.Role_ROLE_RECEPTIONIST, "desk-1") {
		t.Fatalf("p1's reads: %+v", got)
	}
	if got := search("outcome=denied&patient=" + p2); len(got.Events) != 1 || got.Events[0].Subject != p1 {
		t.Fatalf("the denied read: %+v", got)
	}
	if got := search("actor=" + subject(messages.Role_ROLE_RECEPTIONIST, "desk-1") + "&to=" + url.QueryEscape(before.Format(time.RFC3339))); len(got.Events) != 2 {
		t.Fatalf("desk-1 before the reads (two registrations): %+v", got)
	}
	// Pages: two, then one, with nothing repeated.
	first := search("patient=" + p1 + "&action=read&limit=2")
	second := search("patient=" + p1 + "&action=read&limit=2&cursor=" + first.NextCursor)
	if len(first.Events) != 2 || first.NextCursor == "" || len(second.Events) != 1 || second.NextCursor != "" {
		t.Fatalf("pages: %+v then %+v", first, second)
	}
	for _, bad := range []string{"patient=nope", "action=teleport", "outcome=maybe", "from=yesterday", "limit=501", "cursor=x", "format=xml", "actor=" + url.QueryEscape("a\x00b")} {
		if r := s.do("GET", "/v1/audit-events?"+bad, admin, nil); r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}

	// Checks on demand: intact, then broken once a row is changed.
	check := func() map[string]any {
		t.Helper()
		r := s.do("POST", "/v1/audit-verifications", admin, nil)
		expect(t, "check the trail", r, 202)
		id := r.json(t)["id"].(string)
		var v map[string]any
		await.Until(t, "the check to end", 30*time.Second, func() bool {
			r := s.do("GET", "/v1/audit-verifications", admin, nil)
			var out struct{ Verifications []map[string]any }
			_ = json.Unmarshal(r.body, &out)
			for _, x := range out.Verifications {
				if x["id"] == id && x["status"] != "running" {
					v = x
				}
			}
			return v != nil
		})
		return v
	}
	if v := check(); v["status"] != "intact" || v["events"].(float64) < 8 || v["requested_by"] != subject(messages.Role_ROLE_ADMIN, "admin-1") {
		t.Fatalf("check = %v", v)
	}
	if m := metric(t, s, "caregrid_audit_trail_intact"); m != 1 {
		t.Fatalf("caregrid_audit_trail_intact = %v after an intact check", m)
	}

	// CSV: a header and one row per event; a cell that looks like a
	// spreadsheet formula is defused. (Changing the rows' detail to one
	// also breaks their chain: the check below finds it.)
	if _, err := s.db.Pool.Exec(ctx, `UPDATE audit_events SET detail = '=HYPERLINK("x")' WHERE patient_id = $1 AND action = 'read'`, p1); err != nil {
		t.Fatal(err)
	}
	r = s.do("GET", "/v1/audit-events?format=csv&action=read&patient="+p1, admin, nil)
	expect(t, "csv", r, 200)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || !strings.Contains(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("csv headers: %v", r.header)
	}
	records, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil || len(records) != 4 || records[0][0] != "occurred_at" || records[1][8] != "read" || records[1][13] != `'=HYPERLINK("x")` {
		t.Fatalf("csv = %q, %v", records, err)
	}

	// The admin's searches about p1 are in p1's access log.
	r = s.do("GET", "/v1/patients/"+p1+"/access-log?limit=100", s.token(messages.Role_ROLE_PATIENT, p1), nil)
	expect(t, "p1's access log", r, 200)
	if n := strings.Count(string(r.body), `"action":"search-audit-trail"`); n < 4 {
		t.Fatalf("the admin's searches in the access log: %d\n%s", n, r.body)
	}
	if v := check(); v["status"] != "broken" || !strings.Contains(v["problem"].(string), "was changed") {
		t.Fatalf("check of a changed trail = %v", v)
	}
	if m := metric(t, s, "caregrid_audit_trail_intact"); m != 0 {
		t.Fatalf("caregrid_audit_trail_intact = %v after a broken check", m)
	}
}

// metric reads one unlabelled sample from the node's /metrics.
func metric(t *testing.T, s *testServer, name string) float64 {
	t.Helper()
	r := s.do("GET", "/metrics", "", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if err := json.Unmarshal([]byte(v), &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}
