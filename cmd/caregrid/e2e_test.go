package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/proof/prooftest"
	"github.com/caregrid/caregrid/internal/await"

	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/pgtest"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/google/uuid"
	"golang.org/x/oauth2/clientcredentials"
)

// testServer is one real node (member + edge) on a fresh database,
// serving HTTP on a loopback port, with the embedded OpenID Provider: the
// tests' tokens come from its token endpoint, as an integration's would.
type testServer struct {
	t    *testing.T
	db   *persistence.DB
	base string
	// tokens caches one access token per role and subject.
	tokens map[string]string
	// blobs is the document store's directory.
	blobs string
	// remoting and cluster are the in-process node's remoting address and
	// cluster name (empty for a process's).
	remoting, cluster string
	// node is the in-process node (nil for a process's).
	node *node
}

func startTestServer(t *testing.T) *testServer {
	t.Helper()
	return startTestServerWithIdentity(t, nil, nil)
}

// testMaster is the tests' master key.
var testMaster = func() *seal.Key {
	k, err := seal.NewKey(bytes.Repeat([]byte{3}, seal.KeySize))
	if err != nil {
		panic(err)
	}
	return k
}()

// startTestServerWithIdentity starts a node whose edge accepts the
// provider's tokens and auth's (nil: none besides). ic configures the
// provider (nil: defaults); its issuer is <base>/oidc on the test's port.
func startTestServerWithIdentity(t *testing.T, auth edge.Authenticator, ic *identity.Config, tune ...func(*nodeConfig)) *testServer {
	t.Helper()
	db := pgtest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	if ic == nil {
		ic = &identity.Config{Limiter: ratelimit.NewLocal(1000)}
	}
	if ic.Seal == nil {
		ic.Seal = testMaster
	}
	ic.DB, ic.Issuer = db, base+identity.PathPrefix
	blobs := t.TempDir()
	cfg := nodeConfig{
		ClusterName: fmt.Sprintf("e2e-%d", time.Now().UnixNano()),
		ClusterTLS:  prooftest.TLS(t),
		GrainIdle:   time.Minute, GrainTimeout: 5 * time.Second,
		// The tests book days ahead and check in at once; the window itself
		// is tested in calendar.TestTransitionRules and TestCheckInOpensAnHourBefore.
		CheckInOpens: 30 * 24 * time.Hour,
		// Exports and erasures are carried out in the background: soon.
		ExportPoll: 100 * time.Millisecond, ErasureSweep: 200 * time.Millisecond,
		Auth:      auth,
		Identity:  ic,
		Master:    testMaster,
		Documents: &edge.Documents{Store: blob.Dir{Root: blobs}, MaxBytes: 1 << 20},
		// Web Push only, to no browser unless a test subscribes one: the
		// notification routes answer, and nothing is sent anywhere.
		Notify:      &notifyConfig{Push: true, PushContact: "mailto:ops@hospital.example", Language: "en", Idle: time.Second},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		ActorLogger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range tune {
		f(&cfg)
	}
	n, err := startNode(context.Background(), db, cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	go func() { _ = n.edge.App().Listener(ln) }()
	t.Cleanup(func() { _ = n.stop(false) })
	return &testServer{t: t, db: db, base: base, tokens: map[string]string{}, blobs: blobs,
		remoting: n.member.Address(), cluster: cfg.ClusterName, node: n}
}

// subject is the account id a test's sub names: sub itself when it is a
// UUID (a patient's or doctor's record), else a UUID derived from role and
// sub, so "desk-1" is one receptionist throughout a test.
func subject(role messages.Role, sub string) string {
	if uuid.Validate(sub) == nil && len(sub) == 36 {
		return strings.ToLower(sub)
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("caregrid-test/"+role.Name()+"/"+sub)).String()
}

// token signs in as sub with role through the provider's client-credentials
// grant, registering a service client for that account on first use.
func (s *testServer) token(role messages.Role, sub string) string {
	s.t.Helper()
	key := role.Name() + "/" + sub
	if tok, ok := s.tokens[key]; ok {
		return tok
	}
	id := subject(role, sub)
	secret := uuid.NewString()
	h := sha256.Sum256([]byte(secret))
	client := persistence.Client{ID: "test-" + id, Name: key, Kind: "service", SecretHash: h[:]}
	if err := s.db.CreateServiceClient(context.Background(), persistence.Account{ID: id, Username: "test-" + id, Role: role.Name()}, client); err != nil {
		s.t.Fatalf("service client for %s: %v", key, err)
	}
	cc := clientcredentials.Config{ClientID: client.ID, ClientSecret: secret, TokenURL: s.base + identity.PathPrefix + "/oauth/token"}
	tok, err := cc.Token(context.Background())
	if err != nil {
		s.t.Fatalf("token for %s: %v", key, err)
	}
	s.tokens[key] = tok.AccessToken
	return tok.AccessToken
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends one request; headers alternate name, value.
func (s *testServer) do(method, path, token string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Request-Id") == "" {
		s.t.Fatalf("%s %s: no X-Request-Id", method, path)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		s.t.Fatalf("%s %s: %d with Content-Type %q, want application/problem+json", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func expect(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s = %d %s, want %d", what, r.status, r.body, status)
	}
}

// problemFields lists the field names of a problem's errors.
func problemFields(t *testing.T, r response) string {
	t.Helper()
	var p struct {
		Type   string
		Errors []struct{ Field string }
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem %q: %v", r.body, err)
	}
	var fs []string
	for _, e := range p.Errors {
		fs = append(fs, e.Field)
	}
	return p.Type + " " + strings.Join(fs, ",")
}

// patientBody is a registration with demographics only, as a receptionist makes it.
func patientBody(idnp string) map[string]any {
	return map[string]any{
		"idnp": idnp, "given_name": "Maria", "family_name": "Ciobanu", "birth_date": "1979-08-27", "sex": "female",
		"phone": "+37369000001", "email": "maria@example.md",
	}
}

// clinicalPatientBody adds clinical data, which only doctors record.
func clinicalPatientBody(idnp string) map[string]any {
	b := patientBody(idnp)
	b["blood_type"] = "B-"
	b["allergies"] = []map[string]string{{"substance": "ibuprofen", "reaction": "hives", "severity": "moderate"}}
	return b
}

func TestHTTPPatientLifecycle(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	otherDocID := workingDoctor(t, s)
	otherDoc := s.token(messages.Role_ROLE_DOCTOR, otherDocID)

	expect(t, "a receptionist records clinical data", s.do("POST", "/v1/patients", desk, clinicalPatientBody("2005042129809")), 403)
	r := s.do("POST", "/v1/patients", doc, clinicalPatientBody("2005042129809"), "X-Request-Id", "req-register-1")
	expect(t, "register", r, 201)
	p := r.json(t)
	id, _ := p["id"].(string)
	// The request id is the edge's own; the client's is kept beside it
	// (TestHTTPAccessLogAndAudit).
	if r.header.Get("Location") != "/v1/patients/"+id || r.header.Get("ETag") != `"1"` || uuid.Validate(r.header.Get("X-Request-Id")) != nil {
		t.Fatalf("register headers = %v", r.header)
	}
	if p["blood_type"] != "B-" || p["version"] != 1.0 || p["birth_date"] != "1979-08-27" || !strings.HasSuffix(p["created_at"].(string), "Z") {
		t.Fatalf("register body = %s", r.body)
	}

	// Receptionists see demographics only; the allergies are absent, never an empty list.
	r = s.do("GET", "/v1/patients/"+id, desk, nil)
	expect(t, "read by receptionist", r, 200)
	if got := r.json(t); got["family_name"] != "Ciobanu" || got["clinical_withheld"] != true || got["blood_type"] != nil || got["allergies"] != nil {
		t.Fatalf("receptionist read = %s", r.body)
	}
	// A doctor reads only patients they have an appointment with.
	expect(t, "read by a doctor without an appointment", s.do("GET", "/v1/patients/"+id, doc, nil), 403)
	book := map[string]any{"doctor_id": doctorID, "patient_id": id, "start": rfc(localDay(t, 1)), "duration_minutes": 15, "reason": "control"}
	expect(t, "book", s.do("POST", "/v1/appointments", desk, book), 201)
	r = s.do("GET", "/v1/patients/"+id, doc, nil)
	expect(t, "read by the patient's doctor", r, 200)
	if got := r.json(t); got["blood_type"] != "B-" || got["clinical_withheld"] != nil || r.header.Get("ETag") != `"1"` {
		t.Fatalf("doctor read = %s", r.body)
	}
	expect(t, "read by another doctor", s.do("GET", "/v1/patients/"+id, otherDoc, nil), 403)
	// A care relationship gives another doctor the same access; removing it takes it away.
	careTeam := "/v1/patients/" + id + "/care-team/"
	expect(t, "a doctor adds themself to the care team", s.do("PUT", careTeam+otherDocID, otherDoc, nil), 403)
	expect(t, "an unknown doctor", s.do("PUT", careTeam+"99999999-9999-4999-8999-999999999999", desk, nil), 404)
	r = s.do("PUT", careTeam+otherDocID, desk, nil)
	expect(t, "add to the care team", r, 200)
	if members, _ := r.json(t)["members"].([]any); len(members) != 1 {
		t.Fatalf("care team = %s", r.body)
	}
	expect(t, "adding twice", s.do("PUT", careTeam+otherDocID, desk, nil), 200)
	expect(t, "read by a care-team doctor", s.do("GET", "/v1/patients/"+id, otherDoc, nil), 200)
	expect(t, "the care team as seen by the patient's doctor", s.do("GET", "/v1/patients/"+id+"/care-team", doc, nil), 200)
	r = s.do("DELETE", careTeam+otherDocID, desk, nil)
	expect(t, "remove from the care team", r, 200)
	if members, _ := r.json(t)["members"].([]any); len(members) != 0 {
		t.Fatalf("care team after removal = %s", r.body)
	}
	expect(t, "read after removal", s.do("GET", "/v1/patients/"+id, otherDoc, nil), 403)
	self := s.token(messages.Role_ROLE_PATIENT, id)
	r = s.do("GET", "/v1/patients/"+id, self, nil)
	expect(t, "read by the patient", r, 200)
	if allergies, _ := r.json(t)["allergies"].([]any); len(allergies) != 1 {
		t.Fatalf("the patient's own read = %s", r.body)
	}
	other := s.token(messages.Role_ROLE_PATIENT, "22222222-2222-4222-8222-222222222222")
	expect(t, "read by another patient", s.do("GET", "/v1/patients/"+id, other, nil), 403)

	patch := map[string]any{"phone": nil, "allergies": []map[string]string{{"substance": "latex", "severity": "severe"}}}
	expect(t, "update without If-Match", s.do("PATCH", "/v1/patients/"+id, doc, patch), 428)
	expect(t, "receptionist changes allergies", s.do("PATCH", "/v1/patients/"+id, desk, patch, "If-Match", `"1"`), 403)
	expect(t, "another doctor changes allergies", s.do("PATCH", "/v1/patients/"+id, otherDoc, patch, "If-Match", `"1"`), 403)
	r = s.do("PATCH", "/v1/patients/"+id, doc, patch, "If-Match", `"1"`)
	expect(t, "update", r, 200)
	if got := r.json(t); got["phone"] != nil || got["version"] != 2.0 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("update = %s", r.body)
	}
	expect(t, "update with a stale If-Match", s.do("PATCH", "/v1/patients/"+id, doc, map[string]any{"email": "x@example.md"}, "If-Match", `"1"`), 412)
	expect(t, "patient changes own email", s.do("PATCH", "/v1/patients/"+id, self, map[string]any{"email": "m@example.md"}, "If-Match", `"2"`), 200)
	expect(t, "patient changes own allergies", s.do("PATCH", "/v1/patients/"+id, self, map[string]any{"allergies": nil}, "If-Match", `"3"`), 403)
	r = s.do("PATCH", "/v1/patients/"+id, desk, map[string]any{"family_name": "Ciobanu-Rusu"}, "If-Match", `"3"`)
	expect(t, "receptionist changes the family name", r, 200)
	if got := r.json(t); got["clinical_withheld"] != true || got["allergies"] != nil {
		t.Fatalf("receptionist's update reply shows clinical data: %s", r.body)
	}
	r = s.do("PATCH", "/v1/patients/"+id, doc, map[string]any{"idnp": "0000000000000"}, "If-Match", `"4"`)
	expect(t, "change idnp", r, 422)
	if got := problemFields(t, r); got != "/problems/validation idnp" {
		t.Fatalf("change idnp problem = %s", got)
	}

	// The clinical history keeps each change of blood type and allergies
	// (registration, the doctor's patch), not the demographic ones.
	r = s.do("GET", "/v1/patients/"+id+"/clinical-history", self, nil)
	expect(t, "clinical history", r, 200)
	var hist struct {
		Changes []struct {
			Version   int64  `json:"version"`
			ChangedBy string `json:"changed_by"`
			BloodType string `json:"blood_type"`
			Allergies []struct {
				Substance string `json:"substance"`
			} `json:"allergies"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(r.body, &hist); err != nil || len(hist.Changes) != 2 || hist.Changes[0].Version != 2 ||
		hist.Changes[0].ChangedBy != doctorID || hist.Changes[0].Allergies[0].Substance != "latex" ||
		hist.Changes[1].Version != 1 || hist.Changes[1].BloodType != "B-" || hist.Changes[1].Allergies[0].Substance != "ibuprofen" {
		t.Fatalf("clinical history = %s", r.body)
	}
	expect(t, "clinical history read by a receptionist", s.do("GET", "/v1/patients/"+id+"/clinical-history", desk, nil), 403)

	r = s.do("POST", "/v1/patients", desk, patientBody("2005042129809"))
	expect(t, "duplicate IDNP", r, 409)
	if got := r.json(t); got["existing_id"] != id || got["type"] != "/problems/already-exists" {
		t.Fatalf("duplicate = %s", r.body)
	}

	expect(t, "unknown id", s.do("GET", "/v1/patients/33333333-3333-4333-8333-333333333333", desk, nil), 404)
	expect(t, "non-UUID id", s.do("GET", "/v1/patients/42", desk, nil), 404)

	// The stored state matches the replies: two patients would be a half-write.
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM patients`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("patients stored = %d, %v; want 1", n, err)
	}
}

func TestHTTPRejectsBadInput(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	tests := []struct {
		name   string
		body   any
		ctype  string
		status int
		want   string // problem type and fields
	}{
		{"malformed JSON", `{"idnp": "2005042129809",`, "", 400, "/problems/malformed-request "},
		{"empty body", ``, "", 400, "/problems/malformed-request "},
		{"unknown field", `{"idnp": "2005042129809", "weight": 80}`, "", 400, "/problems/malformed-request weight"},
		{"wrong type", `{"idnp": 2005042129809}`, "", 400, "/problems/malformed-request idnp"},
		{"trailing data", `{} {}`, "", 400, "/problems/malformed-request "},
		{"not JSON", `idnp=1`, "application/x-www-form-urlencoded", 415, "/problems/unsupported-media-type "},
		{"bad IDNP", func() any { b := patientBody("2005042129808"); return b }(), "", 422, "/problems/validation idnp"},
		{"bad date", func() any { b := patientBody("2005042129809"); b["birth_date"] = "1979-02-30"; return b }(), "", 422, "/problems/validation birth_date"},
		{"bad enums", func() any {
			b := patientBody("2005042129809")
			b["sex"], b["blood_type"] = "f", "AB"
			return b
		}(), "", 422, "/problems/validation sex,blood_type"},
		{"several fields", map[string]any{"idnp": "1", "sex": "male", "birth_date": "2999-01-01", "email": "no"}, "", 422,
			"/problems/validation birth_date,email,family_name,given_name,idnp"},
	}
	for _, tt := range tests {
		headers := []string{}
		if tt.ctype != "" {
			headers = append(headers, "Content-Type", tt.ctype)
		}
		body := tt.body
		if body == "" {
			body = []byte{}
		}
		r := s.do("POST", "/v1/patients", desk, body, headers...)
		if r.status != tt.status {
			t.Errorf("%s: status %d %s, want %d", tt.name, r.status, r.body, tt.status)
			continue
		}
		if got := problemFields(t, r); got != tt.want {
			t.Errorf("%s: problem %q, want %q", tt.name, got, tt.want)
		}
	}

	// An oversize body is refused on its Content-Length, before it is read
	// (beyond the 8 KiB the server reads ahead).
	// Sent raw: an HTTP client still writing the body when the server answers
	// and closes gets a broken pipe instead of the answer (a flaky test).
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // a server that waits for the body fails here
	fmt.Fprintf(conn, "POST /v1/patients HTTP/1.1\r\nHost: caregrid\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{",
		desk, edge.MaxBodyBytes+1)
	_, _ = conn.Write(bytes.Repeat([]byte(" "), 16<<10)) // past the 8 KiB fasthttp reads ahead
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("oversize body: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	if r.status != 413 || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("oversize body = %d %s %q", r.status, b, resp.Header)
	}
	if got := problemFields(t, r); got != "/problems/body-too-large " {
		t.Fatalf("oversize body problem = %q", got)
	}
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM patients`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("patients stored after bad input = %d, %v; want 0", n, err)
	}
	r = s.do("GET", "/v1/patients/"+"33333333-3333-4333-8333-333333333333"+"/access-log?limit=501", desk, nil)
	expect(t, "limit over 500", r, 400)
}

func TestHTTPIdempotentRegistration(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	first := s.do("POST", "/v1/patients", desk, patientBody("0000000000000"), "Idempotency-Key", "reg-42")
	expect(t, "first", first, 201)
	again := s.do("POST", "/v1/patients", desk, patientBody("0000000000000"), "Idempotency-Key", "reg-42")
	expect(t, "replay", again, 201)
	if first.json(t)["id"] != again.json(t)["id"] || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %s (%v), want the first reply %s", again.body, again.header, first.body)
	}
	other := patientBody("0000000000000")
	other["given_name"] = "Elena"
	expect(t, "same key, other body", s.do("POST", "/v1/patients", desk, other, "Idempotency-Key", "reg-42"), 422)
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM patients`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("patients stored = %d, %v; want 1", n, err)
	}
}

func TestHTTPAccessLogAndAudit(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("1000000000007"), "X-Request-Id", "req-register-1")
	expect(t, "register", r, 201)
	registerRequestID := r.header.Get("X-Request-Id")
	id := r.json(t)["id"].(string)
	self := s.token(messages.Role_ROLE_PATIENT, id)

	for _, sub := range []string{"desk-a", "desk-b", "desk-a"} {
		expect(t, "read", s.do("GET", "/v1/patients/"+id, s.token(messages.Role_ROLE_RECEPTIONIST, sub), nil), 200)
	}
	// A refusal is an access too: the patient sees the attempt.
	expect(t, "read by a doctor without an appointment", s.do("GET", "/v1/patients/"+id, s.token(messages.Role_ROLE_DOCTOR, "dr-a"), nil), 403)
	expect(t, "access log by a doctor", s.do("GET", "/v1/patients/"+id+"/access-log", s.token(messages.Role_ROLE_DOCTOR, "dr-a"), nil), 403)
	expect(t, "access log without a token", s.do("GET", "/v1/patients/"+id+"/access-log", "", nil), 401)

	r = s.do("GET", "/v1/patients/"+id+"/access-log?limit=3", self, nil)
	expect(t, "access log page 1", r, 200)
	type ev struct {
		Subject      string `json:"subject"`
		Role         string `json:"role"`
		Action       string `json:"action"`
		Outcome      string `json:"outcome"`
		PurposeOfUse string `json:"purpose_of_use"`
		OccurredAt   string `json:"occurred_at"`
		RequestID    string `json:"request_id"`
		ClientReqID  string `json:"client_request_id"`
	}
	var p1, p2 struct {
		Events     []ev   `json:"events"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &p1); err != nil || p1.NextCursor == "" || len(p1.Events) != 3 {
		t.Fatalf("page 1 = %s", r.body)
	}
	r = s.do("GET", "/v1/patients/"+id+"/access-log?cursor="+p1.NextCursor, self, nil)
	expect(t, "access log page 2", r, 200)
	if err := json.Unmarshal(r.body, &p2); err != nil || p2.NextCursor != "" || len(p2.Events) == 0 {
		t.Fatalf("page 2 = %s", r.body)
	}
	if e := p2.Events[len(p2.Events)-1]; e.Action != "create" || e.RequestID != registerRequestID || e.ClientReqID != "req-register-1" {
		t.Fatalf("the registration's audit event = %+v; want request id %s, the client's req-register-1", e, registerRequestID)
	}
	var got []string
	for _, e := range append(p1.Events, p2.Events...) {
		got = append(got, e.Subject+" "+e.Action+" "+e.Outcome)
	}
	// Newest first. Page 2 continues back in time from page 1, so the
	// patient's own read of page 1 (newer) is not on it; the
	// unauthenticated attempt never reached the record (no identity to
	// record).
	deskID := func(sub string) string { return subject(messages.Role_ROLE_RECEPTIONIST, sub) }
	dr := subject(messages.Role_ROLE_DOCTOR, "dr-a")
	want := []string{dr + " read-access-log denied", dr + " read denied", deskID("desk-a") + " read success",
		deskID("desk-b") + " read success", deskID("desk-a") + " read success", deskID("desk-1") + " create success"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("access log =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p1.Events[2].PurposeOfUse != "TREAT" || p1.Events[2].Role != "receptionist" {
		t.Fatalf("read event = %+v", p1.Events[2])
	}

	// The chains verify, and a changed row is found.
	if n, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err != nil || n < 7 {
		t.Fatalf("verifyAudit = %d, %v", n, err)
	}
	if _, err := s.db.Pool.Exec(ctx, `UPDATE audit_events SET subject = 'someone-else' WHERE subject = $1`, deskID("desk-b")); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err == nil || !strings.Contains(err.Error(), "was changed") {
		t.Fatalf("verifyAudit(tampered) = %v, want a changed row", err)
	}
}

// TestHTTPFailsClosedWithoutAudit: when the audit store cannot take the
// event, the read is refused (503), never served unaudited.
func TestHTTPFailsClosedWithoutAudit(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("0100000000003"))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)

	if _, err := s.db.Pool.Exec(ctx, `ALTER TABLE audit_events RENAME TO audit_events_away`); err != nil {
		t.Fatal(err)
	}
	etag := r.header.Get("ETag")
	r = s.do("GET", "/v1/patients/"+id, desk, nil)
	expect(t, "read while the audit store fails", r, 503)
	if bytes.Contains(r.body, []byte("Ciobanu")) || r.json(t)["type"] != "/problems/audit-unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("fail-closed reply = %s %v", r.body, r.header)
	}
	// A write's audit row is in its own transaction: the change commits
	// with it and is answered, and the trail chains it once it can.
	r = s.do("PATCH", "/v1/patients/"+id, desk, map[string]any{"phone": "+37369000002"}, "If-Match", etag, "Content-Type", "application/merge-patch+json")
	expect(t, "a change while the audit chain cannot be written", r, 200)
	var pending int
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&pending); err != nil || pending != 1 {
		t.Fatalf("%d audit events wait for the chain (%v), want the change's", pending, err)
	}
	if _, err := s.db.Pool.Exec(ctx, `ALTER TABLE audit_events_away RENAME TO audit_events`); err != nil {
		t.Fatal(err)
	}
	expect(t, "read once the audit store is back", s.do("GET", "/v1/patients/"+id, desk, nil), 200)
	await.Until(t, "the change's audit event to be chained", 10*time.Second, func() bool {
		var n int
		return s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE patient_id = $1 AND action = 'update' AND outcome = 'success'`, id).Scan(&n) == nil && n == 1
	})
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("%d audit events still wait (%v)", pending, err)
	}
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err != nil {
		t.Fatalf("verifyAudit after the outage = %v", err)
	}
}

// TestHTTPRolesPerRoute checks the route table's roles against behaviour:
// every role a route does not list is refused, and no token is 401.
func TestHTTPRolesPerRoute(t *testing.T) {
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody("0010000000001"))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)

	doctorID := workingDoctor(t, s)
	clinicID := ""
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT clinic_id::TEXT FROM doctors WHERE id = $1`, doctorID).Scan(&clinicID); err != nil {
		t.Fatal(err)
	}
	r = s.do("POST", "/v1/appointments", desk, map[string]any{"doctor_id": doctorID, "patient_id": id, "start": rfc(localDay(t, 2))})
	expect(t, "book", r, 201)
	apptID := r.json(t)["id"].(string)
	// A second appointment, which the appointment routes below leave alone:
	// the doctor's access to the record must outlast the first one's
	// cancellation (which ends what that one granted).
	expect(t, "book another", s.do("POST", "/v1/appointments", desk,
		map[string]any{"doctor_id": doctorID, "patient_id": id, "start": rfc(localDay(t, 2).Add(2 * time.Hour))}), 201)
	// Each route's :id names a resource of its kind; patients and doctors act on their own.
	idFor := func(path string) string {
		switch {
		case strings.HasPrefix(path, "/v1/appointments"):
			return apptID
		case strings.HasPrefix(path, "/v1/doctors"):
			return doctorID
		case strings.HasPrefix(path, "/v1/clinics"):
			return clinicID
		case strings.HasPrefix(path, "/v1/accounts"):
			// Not the patient's own account: disabling it would end the test's token.
			return "66666666-6666-4666-8666-666666666666"
		}
		return id
	}
	all := []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_DOCTOR, messages.Role_ROLE_ADMIN}
	srv := edge.New(edge.Config{})
	for _, rt := range srv.RouteTable() {
		if rt.Roles == nil && strings.Contains(rt.Path, ":export") {
			// An export's download link is its own credential: no token, nothing.
			expect(t, rt.Method+" "+rt.Path+" (the link's token is the credential)",
				s.do(rt.Method, strings.ReplaceAll(rt.Path, ":export", "99999999-9999-4999-8999-999999999999"), "", nil), 404)
			continue
		}
		if rt.Roles == nil {
			expect(t, rt.Method+" "+rt.Path+" (public)", s.do(rt.Method, rt.Path, "", nil), 200)
			continue
		}
		path := strings.NewReplacer(":id", idFor(rt.Path), ":doctor", doctorID, ":document", "77777777-7777-4777-8777-777777777777",
			":restriction", "88888888-8888-4888-8888-888888888888", ":export", "99999999-9999-4999-8999-999999999999").Replace(rt.Path)
		var body any
		if rt.Method != "GET" {
			body = map[string]any{}
		} else { // routes over a time range need one; others ignore it
			path += "?from=" + rfc(localDay(t, 1)) + "&to=" + rfc(localDay(t, 3))
		}
		expect(t, rt.Method+" "+rt.Path+" without a token", s.do(rt.Method, path, "", body), 401)
		expect(t, rt.Method+" "+rt.Path+" with a forged token", s.do(rt.Method, path, "x.y.z", body), 401)
		for _, role := range all {
			allowed := false
			for _, a := range rt.Roles {
				allowed = allowed || a == role
			}
			sub := "someone"
			switch role {
			case messages.Role_ROLE_PATIENT:
				sub = id
			case messages.Role_ROLE_DOCTOR:
				sub = doctorID
			}
			tok := s.token(role, sub)
			r := s.do(rt.Method, path, tok, body, "If-Match", `"1"`)
			// An allowed role may still be refused for what it sent (404,
			// 409, 412, 422: the dummy ids and bodies), never for who it is,
			// and never with a failure of the node.
			if allowed && (r.status == 401 || r.status == 403 || r.status >= 500) {
				t.Errorf("%s %s as %s = %d, but the route table allows it: %s", rt.Method, rt.Path, role.Name(), r.status, r.body)
			}
			if !allowed && r.status != 403 {
				t.Errorf("%s %s as %s = %d, want 403: %s", rt.Method, rt.Path, role.Name(), r.status, r.body)
			}
		}
	}
}

// testClock is the wall clock shifted by an offset the test sets: code
// that takes a Now func reads it, so a test can put that code at a
// moment of its choosing (a TOTP step, a link's expiry) without sleeping.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Shift moves the clock by d from the wall clock (0: back to it).
func (c *testClock) Shift(d time.Duration) { c.offset.Store(int64(d)) }

// TestSignedCheckpointsCatchARewriteAndACutTail: a chain rewritten whole
// (every hash recomputed, so the chain itself verifies) or cut at its tail
// is found by its signed checkpoints; a rotated key's checkpoints still
// verify; the public keys are published.
func TestSignedCheckpointsCatchARewriteAndACutTail(t *testing.T) {
	ctx := context.Background()
	s := startTestServer(t)
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)
	for range 3 {
		expect(t, "read", s.do("GET", "/v1/patients/"+id, desk, nil), 200)
	}
	signer := audit.Checkpointer{DB: s.db, Master: testMaster}
	if n, err := signer.Sign(ctx); err != nil || n == 0 {
		t.Fatalf("sign = %d, %v", n, err)
	}
	if n, err := signer.Sign(ctx); err != nil || n != 0 {
		t.Fatalf("signing unmoved heads again = %d, %v; want nothing to do", n, err)
	}
	// A rotation: the old key's checkpoints still verify, new ones use the new key.
	if err := rotateAuditKey(ctx, []string{"--database-url", s.db.Pool.Config().ConnString(), "--master-key-file", writeMasterKey(t)}); err != nil {
		t.Fatal(err)
	}
	expect(t, "one more read", s.do("GET", "/v1/patients/"+id, desk, nil), 200)
	if n, err := signer.Sign(ctx); err != nil || n == 0 {
		t.Fatalf("sign after the rotation = %d, %v", n, err)
	}
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err != nil {
		t.Fatalf("verify an intact trail: %v", err)
	}
	r = s.do("GET", "/.well-known/caregrid-audit-keys", "", nil)
	expect(t, "keys", r, 200)
	if n := strings.Count(string(r.body), `"alg":"Ed25519"`); n != 2 || !strings.Contains(string(r.body), `"retired_at"`) {
		t.Fatalf("published keys: %s", r.body)
	}

	// Rewritten whole: a subject changed and every later hash recomputed.
	var rows []persistence.AuditRow
	shards, _ := s.db.AuditShards(ctx)
	for _, shard := range shards {
		if err := s.db.ScanAuditChain(ctx, shard, func(r persistence.AuditRow) error { rows = append(rows, r); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	rewrite := func(rows []persistence.AuditRow) {
		t.Helper()
		prev := map[int32][]byte{}
		for i := range rows {
			r := &rows[i]
			if i == 0 {
				r.Subject = "someone-else"
			}
			r.PrevHash = prev[r.Shard]
			if r.PrevHash == nil {
				r.PrevHash = []byte{}
			}
			r.Hash = audit.Hash(r.PrevHash, r)
			prev[r.Shard] = r.Hash
			if _, err := s.db.Pool.Exec(ctx, `UPDATE audit_events SET subject = $3, prev_hash = $4, hash = $5 WHERE shard = $1 AND seq = $2`,
				r.Shard, r.Seq, r.Subject, r.PrevHash, r.Hash); err != nil {
				t.Fatal(err)
			}
		}
	}
	original := slices.Clone(rows)
	rewrite(rows)
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err == nil || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("verify a rewritten chain = %v, want it found", err)
	}
	for _, r := range original { // put it back
		if _, err := s.db.Pool.Exec(ctx, `UPDATE audit_events SET subject = $3, prev_hash = $4, hash = $5 WHERE shard = $1 AND seq = $2`,
			r.Shard, r.Seq, r.Subject, r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err != nil {
		t.Fatalf("verify the restored trail: %v", err)
	}
	// Cut: the last rows of a shard deleted.
	last := original[len(original)-1]
	if _, err := s.db.Pool.Exec(ctx, `DELETE FROM audit_events WHERE shard = $1 AND seq >= $2`, last.Shard, last.Seq-1); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyAudit(ctx, s.db, func(int32, int64) {}); err == nil || !strings.Contains(err.Error(), "tail was cut") {
		t.Fatalf("verify a cut chain = %v, want it found", err)
	}
}

// writeMasterKey writes the tests' master key as a key file.
func writeMasterKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(bytes.Repeat([]byte{3}, seal.KeySize))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// verifyAudit is `caregrid audit verify`'s check: the events it checked.
func verifyAudit(ctx context.Context, db *persistence.DB, report func(int32, int64)) (int64, error) {
	_, n, err := audit.VerifyTrail(ctx, db, report)
	return n, err
}
