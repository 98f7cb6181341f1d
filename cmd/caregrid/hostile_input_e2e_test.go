package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/messages"
)

// hostile is one class of hostile input: how it changes a request to a
// route (path with its ids filled in, whether the route takes a body).
type hostile struct {
	name string
	// apply returns the path, body and headers to send; ok false when the
	// class does not apply to the route (a body class on a GET).
	apply func(path string, method string) (p string, body any, headers []string, ok bool)
}

func gzipBomb() []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = w.Write(bytes.Repeat([]byte("{"), 32<<20)) // 32 MiB of '{' in about 32 KiB
	_ = w.Close()
	return b.Bytes()
}

// TestHostileInputIsRefusedEverywhere sends every class of hostile input
// the probe of issue 18 found to every authenticated route, as a role the
// route allows: each answers 4xx problem+json (do checks the type), none
// 5xx, and no table the API writes changes.
func TestHostileInputIsRefusedEverywhere(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	patient, doctorID, appointment := bookedPatient(t, s, 2)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	r := s.do("GET", "/v1/doctors/"+doctorID, doc, nil)
	clinic := r.json(t)["clinic_id"].(string)
	idFor := func(path string) string {
		switch {
		case strings.HasPrefix(path, "/v1/appointments"):
			return appointment
		case strings.HasPrefix(path, "/v1/doctors"):
			return doctorID
		case strings.HasPrefix(path, "/v1/clinics"):
			return clinic
		}
		return patient
	}
	// Tokens first: signing in writes to the identity tables.
	tokens := map[messages.Role]string{messages.Role_ROLE_DOCTOR: doc, messages.Role_ROLE_ADMIN: s.token(messages.Role_ROLE_ADMIN, "admin-1"),
		messages.Role_ROLE_RECEPTIONIST: desk, messages.Role_ROLE_PATIENT: s.token(messages.Role_ROLE_PATIENT, patient)}
	tokenFor := func(roles []messages.Role) string {
		for _, role := range []messages.Role{messages.Role_ROLE_DOCTOR, messages.Role_ROLE_ADMIN, messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_PATIENT} {
			if slices.Contains(roles, role) {
				return tokens[role]
			}
		}
		return ""
	}

	// A fingerprint of every table the API writes (the audit trail records
	// refusals, by design; the outbox is drained in the background, and
	// every event in it comes with a change to one of these).
	tables := []string{"patients", "clinics", "doctors", "appointments", "slot_claims", "patient_reservations", "care_team",
		"visits", "diagnoses", "vaccinations", "patient_clinical_history", "prescriptions", "prescription_dispenses",
		"documents", "accounts", "account_tokens"}
	fingerprint := func() map[string]string {
		out := map[string]string{}
		for _, table := range tables {
			var sum string
			q := fmt.Sprintf(`SELECT coalesce(md5(string_agg(t::TEXT, ',' ORDER BY t::TEXT)), '') FROM %s t`, table)
			if err := s.db.Pool.QueryRow(ctx, q).Scan(&sum); err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			out[table] = sum
		}
		return out
	}
	before := fingerprint()

	withBody := func(body any, headers ...string) func(string, string) (string, any, []string, bool) {
		return func(path, method string) (string, any, []string, bool) {
			return path, body, headers, method != "GET"
		}
	}
	bomb := gzipBomb() // once: compressing 32 MiB per route took minutes under -race
	classes := []hostile{
		{"invalid UTF-8 in the query", func(p, _ string) (string, any, []string, bool) {
			return p + "?cursor=%FF%FE&limit=5&status=%C3%28&specialty=%FF", nil, nil, true
		}},
		{"a NUL in the query", func(p, _ string) (string, any, []string, bool) {
			return p + "?specialty=a%00b&cursor=%00", nil, nil, true
		}},
		{"a control character in the path", func(p, _ string) (string, any, []string, bool) {
			return strings.Replace(p, "/v1/", "/v1/%01", 1), nil, nil, true
		}},
		{"invalid UTF-8 in the path", func(p, _ string) (string, any, []string, bool) {
			return strings.Replace(p, idFor(p), "%FF%FE", 1), nil, nil, strings.Contains(p, idFor(p))
		}},
		{"a urn:uuid id", func(p, _ string) (string, any, []string, bool) {
			return strings.Replace(p, idFor(p), "urn:uuid:"+idFor(p), 1), nil, nil, strings.Contains(p, idFor(p))
		}},
		{"a long path", func(p, _ string) (string, any, []string, bool) {
			return p + "/" + strings.Repeat("a", 2000), nil, nil, true
		}},
		{"too many query parameters", func(p, _ string) (string, any, []string, bool) {
			return p + "?" + strings.Repeat("a=1&", 40), nil, nil, true
		}},
		{"a huge query value", func(p, _ string) (string, any, []string, bool) {
			return p + "?cursor=" + strings.Repeat("x", 5000), nil, nil, true
		}},
		{"a compressed body", func(p, _ string) (string, any, []string, bool) {
			return p, bomb, []string{"Content-Encoding", "gzip"}, true
		}},
		{"a brotli body", withBody([]byte{0x1b, 0xff, 0xff, 0xff}, "Content-Encoding", "br")},
		{"a null body", withBody("null")},
		{"an array body", withBody("[]")},
		{"duplicate keys", withBody(`{"reason":"a","reason":"b","quantity":"1","quantity":"2","given_name":"A","given_name":"B"}`)},
		{"a NUL in a string", withBody(`{"reason":"a\u0000b","given_name":"a\u0000","quantity":"\u0000","substance":"\u0000"}`)},
		{"invalid UTF-8 in a string", withBody([]byte("{\"reason\":\"\xff\xfe\",\"given_name\":\"\xc3\x28\"}"))},
		{"a body over 64 KiB", withBody(`{"reason":"` + strings.Repeat("x", 70<<10) + `"}`)},
		{"trailing data", withBody(`{} {}`)},
		{"If-Match ahead of the record", func(p, method string) (string, any, []string, bool) {
			return p, `{"phone":"+37369000009"}`, []string{"If-Match", `"999"`, "Content-Type", "application/merge-patch+json"}, method == "PATCH"
		}},
	}
	srv := edge.New(edge.Config{})
	sent := 0
	for _, rt := range srv.RouteTable() {
		if rt.Roles == nil {
			continue
		}
		path := strings.NewReplacer(":id", idFor(rt.Path), ":doctor", doctorID, ":document", "77777777-7777-4777-8777-777777777777").Replace(rt.Path)
		token := tokenFor(rt.Roles)
		for _, c := range classes {
			p, body, headers, ok := c.apply(path, rt.Method)
			if !ok {
				continue
			}
			if rt.Method == "PATCH" && c.name != "If-Match ahead of the record" {
				headers = append(headers, "If-Match", `"1"`)
			}
			r := s.do(rt.Method, p, token, body, headers...)
			sent++
			if r.status < 400 || r.status >= 500 {
				t.Errorf("%s %s with %s = %d, want 4xx: %.300s", rt.Method, rt.Path, c.name, r.status, r.body)
			}
		}
	}
	// The sign-in pages' forms: a value that is not UTF-8 text never
	// reaches the provider's handlers (the database refused it: 500).
	for _, path := range []string{"/oidc/login?authRequestID=x", "/oidc/login/forgot", "/oidc/login/totp", "/oidc/oauth/token"} {
		for _, form := range []string{"username=%FF%FE&password=x", "username=a%00b&password=x", "code=%C3%28"} {
			r := s.do("POST", path, "", form, "Content-Type", "application/x-www-form-urlencoded")
			sent++
			if r.status != 400 {
				t.Errorf("POST %s with %s = %d, want 400: %.300s", path, form, r.status, r.body)
			}
		}
	}
	after := fingerprint()
	for _, table := range tables {
		if before[table] != after[table] {
			t.Errorf("table %s changed under hostile input", table)
		}
	}
	t.Logf("%d hostile requests, all 4xx", sent)
}

// TestHostileBodiesCostTheNodeNoMemory: compressed bodies are refused
// before they are decoded, and an upload's 20 MiB allowance is not granted
// before its sender is proven, so a stream of them allocates next to
// nothing in the node (the test's own process). Decoded, the bombs alone
// would be 20 x 32 MiB; read, the uploads 12 x 20 MiB.
func TestHostileBodiesCostTheNodeNoMemory(t *testing.T) {
	s := startTestServer(t)
	patient, _, _ := bookedPatient(t, s, 1)
	self := s.token(messages.Role_ROLE_PATIENT, patient)
	bomb := gzipBomb()

	runtime.GC()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	for range 20 {
		r := s.do("PATCH", "/v1/patients/"+patient, self, bomb, "Content-Encoding", "gzip", "If-Match", `"1"`,
			"Content-Type", "application/merge-patch+json")
		expect(t, "a gzip bomb", r, 415)
	}
	for range 12 {
		// An unauthenticated upload announcing 20 MiB: refused on its header.
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/patients/%s/documents HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n", patient, 20<<20)
		_, _ = conn.Write(bytes.Repeat([]byte("x"), 64<<10))
		status, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.Contains(status, " 413 ") {
			t.Fatalf("an unauthenticated 20 MiB upload: %q, %v; want 413", status, err)
		}
	}
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	const bound = 64 << 20
	if allocated := end.TotalAlloc - start.TotalAlloc; allocated > bound {
		t.Fatalf("32 hostile bodies allocated %d MiB in the node; the bound is %d MiB", allocated>>20, bound>>20)
	} else {
		t.Logf("32 hostile bodies allocated %.1f MiB (bound %d MiB)", float64(allocated)/(1<<20), bound>>20)
	}
}
