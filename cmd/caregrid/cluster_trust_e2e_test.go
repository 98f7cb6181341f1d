package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/caregrid/caregrid/actors/proof/prooftest"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/internal/await"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/google/uuid"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// trustedNode is a real caregrid process whose cluster CA the test keeps,
// so it can issue the certificates an attacker or a service would hold.
type trustedNode struct {
	*testServer
	proc     *process
	remoting string
	certs    devcerts.Files
	dir      string
}

func startTrustedNode(t *testing.T) *trustedNode {
	t.Helper()
	dir := t.TempDir()
	certs, err := devcerts.Generate(filepath.Join(dir, "cluster"), 1, cluster.PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	remoting := freeAddr(t)
	_, port, _ := net.SplitHostPort(remoting)
	m := certs.Members[0]
	proc, db := startProcess(t, "--cluster-port", port,
		"--cluster-tls-ca", certs.CA, "--cluster-tls-cert", m.Cert, "--cluster-tls-key", m.Key)
	return &trustedNode{testServer: &testServer{t: t, db: db, base: proc.base, tokens: map[string]string{}},
		proc: proc, remoting: remoting, certs: certs, dir: dir}
}

// serviceClient registers an OAuth service client with role and returns
// its id and secret.
func (n *trustedNode) serviceClient(role, name string) (id, secret string) {
	n.t.Helper()
	account, secret := uuid.NewString(), uuid.NewString()
	h := sha256.Sum256([]byte(secret))
	id = name + "-" + account[:8]
	if err := n.db.CreateServiceClient(context.Background(), persistence.Account{ID: account, Username: id, Role: role},
		persistence.Client{ID: id, Name: name, Kind: "service", SecretHash: h[:]}); err != nil {
		n.t.Fatal(err)
	}
	return id, secret
}

func (n *trustedNode) tokenOf(id, secret string) string {
	n.t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: n.base + identity.PathPrefix + "/oauth/token"}
	tok, err := cc.Token(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return tok.AccessToken
}

// join connects this test process to the node as a cluster client holding
// the certificate cert: what an attacker on the network with that key, or
// a service, can do.
func (n *trustedNode) join(cert devcerts.Member) *cluster.Node {
	n.t.Helper()
	c, err := cluster.Start(context.Background(), cluster.Config{Name: "caregrid", Host: "127.0.0.1", Client: true,
		Peers: []string{n.remoting}, TLS: &cluster.TLS{CAFile: n.certs.CA, CertFile: cert.Cert, KeyFile: cert.Key}})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Stop(false) })
	return c
}

// auditRows counts the audit events about patient.
func (n *trustedNode) auditRows(patient string) int {
	n.t.Helper()
	var count int
	if err := n.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE patient_id = $1`, patient).Scan(&count); err != nil {
		n.t.Fatal(err)
	}
	return count
}

// TestGrainsRefuseCallersTheyCannotProve tries, from another process
// joined to a real node's remoting, everything issue 16 found: reading a
// record, an access log, a care team and an agenda, changing a care team,
// a saga step, and appending to the audit trail, with a claimed Caller and
// no token, with a forged token, with someone else's real token, and with
// a revoked one; as a service and as a holder of a member certificate.
// Every call is refused and returns nothing, no forged event reaches the
// audit trail, the care team is unchanged, and the node keeps serving. A
// PoisonPill and a Stop sent to the partition activator are dropped and
// counted, and patient reads go on.
func TestGrainsRefuseCallersTheyCannotProve(t *testing.T) {
	n := startTrustedNode(t)
	doctorID := workingDoctor(t, n.testServer)
	patientID := treatedPatient(t, n.testServer, doctorID)
	doctor := n.token(messages.Role_ROLE_DOCTOR, doctorID)
	otherPatient := n.token(messages.Role_ROLE_PATIENT, treatedPatient(t, n.testServer, doctorID))

	pharmacyID, pharmacySecret := n.serviceClient("service", "pharmacy")
	pharmacyToken := n.tokenOf(pharmacyID, pharmacySecret)
	svcCert, err := devcerts.Issue(n.certs.CA, n.certs.CAKey, n.dir, "pharmacy", cluster.ServiceName(pharmacyID), nil)
	if err != nil {
		t.Fatal(err)
	}
	memberCert, err := devcerts.Issue(n.certs.CA, n.certs.CAKey, n.dir, "stolen-member", cluster.PeerName, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	service, member := n.join(svcCert), n.join(memberCert)
	rowsBefore := n.auditRows(patientID)

	claimed := func(token string) *messages.Caller {
		return &messages.Caller{Subject: patientID, Role: messages.Role_ROLE_PATIENT, Client: "portal",
			RequestId: "forged-request", SourceAddress: "10.66.66.66", Token: token}
	}
	asDoctor := func(token string) *messages.Caller {
		return &messages.Caller{Subject: doctorID, Role: messages.Role_ROLE_DOCTOR, Token: token}
	}
	opts := cluster.CallOptions(5 * time.Second)
	type attempt struct {
		name string
		call func(c *cluster.Node) (any, error)
	}
	getPatient := func(c *messages.Caller) func(*cluster.Node) (any, error) {
		return func(node *cluster.Node) (any, error) {
			return messages.GetPatientGrainClient(node.Cluster, patientID).Get(&messages.GetPatientRequest{Caller: c}, opts...)
		}
	}
	everything := func(c *messages.Caller) []attempt {
		return []attempt{
			{"Patient.Get", getPatient(c)},
			{"Patient.AccessLog", func(node *cluster.Node) (any, error) {
				return messages.GetPatientGrainClient(node.Cluster, patientID).AccessLog(&messages.AccessLogRequest{Caller: c}, opts...)
			}},
			{"Patient.CareTeam", func(node *cluster.Node) (any, error) {
				return messages.GetPatientGrainClient(node.Cluster, patientID).CareTeam(&messages.CareTeamRequest{Caller: c}, opts...)
			}},
			{"Patient.ChangeCareTeam", func(node *cluster.Node) (any, error) {
				return messages.GetPatientGrainClient(node.Cluster, patientID).ChangeCareTeam(&messages.ChangeCareTeamRequest{Caller: c,
					DoctorId: uuid.NewString()}, opts...)
			}},
			{"Calendar.Agenda", func(node *cluster.Node) (any, error) {
				from := time.Now()
				return messages.GetCalendarGrainClient(node.Cluster, doctorID).Agenda(&messages.AgendaRequest{Caller: c,
					From: timestamppb.New(from), To: timestamppb.New(from.AddDate(0, 0, 7))}, opts...)
			}},
		}
	}
	saga := []attempt{
		{"Patient.Reserve (a saga step)", func(node *cluster.Node) (any, error) {
			return messages.GetPatientGrainClient(node.Cluster, patientID).Reserve(&messages.ReserveRequest{Caller: asDoctor(doctor),
				AppointmentId: uuid.NewString(), DoctorId: doctorID, Start: timestamppb.Now(), End: timestamppb.New(time.Now().Add(time.Hour))}, opts...)
		}},
	}
	refused := func(who string, c *cluster.Node, tries []attempt, want func(error) bool, wantName string) {
		t.Helper()
		for _, a := range tries {
			reply, err := a.call(c)
			if err == nil || !want(err) {
				t.Errorf("%s, %s: reply %v, error %v; want %s", who, a.name, reply, err, wantName)
			}
		}
	}
	unproven, denied := messages.IsUnproven, messages.IsPermissionDenied

	// A service: without a token, with a forged one, with a real doctor's
	// token it is not, and its own token whatever the Caller claims.
	refused("service without a token", service, everything(claimed("")), unproven, "UNPROVEN")
	refused("service with a forged token", service, everything(claimed("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")), unproven, "UNPROVEN")
	refused("service with a doctor's token", service, everything(asDoctor(doctor)), unproven, "UNPROVEN")
	refused("service as itself, claiming a patient", service, everything(claimed(pharmacyToken)), denied, "PERMISSION_DENIED")
	refused("service as itself, claiming the doctor", service, everything(asDoctor(pharmacyToken)), denied, "PERMISSION_DENIED")
	refused("service", service, saga, unproven, "UNPROVEN")

	// A holder of a member certificate: a proof is still required, and a
	// real token proves only its own bearer.
	refused("member without a token", member, everything(claimed("")), unproven, "UNPROVEN")
	refused("member with a forged token", member, everything(claimed(strings.Repeat("x", 40))), unproven, "UNPROVEN")
	refused("member with another patient's token", member, everything(claimed(otherPatient)), denied, "PERMISSION_DENIED")
	revoke(t, n.base+identity.PathPrefix, pharmacyID, pharmacySecret, pharmacyToken)
	refused("member replaying a revoked token", member, []attempt{{"Patient.Get", getPatient(claimed(pharmacyToken))}}, unproven, "UNPROVEN")

	// Operators see who is connected, by certificate name.
	r := n.do("GET", "/v1/ops/cluster", n.token(messages.Role_ROLE_ADMIN, "admin-1"), nil)
	expect(t, "the cluster view", r, 200)
	for _, want := range []string{`"peer":"service:` + pharmacyID + `"`, `"peer":"member"`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("the cluster view lists no connection with %s: %s", want, r.body)
		}
	}

	// Lifecycle messages to the partition activator from a service are
	// dropped and counted.
	activator := actor.NewPID(n.remoting, "partition-activator")
	service.System.Root.Send(activator, &actor.PoisonPill{})
	service.System.Root.Stop(activator)
	for _, typ := range []string{"actor.PoisonPill", "actor.Stop"} {
		name := `caregrid_cluster_messages_dropped_total{peer="service",type="` + typ + `"}`
		await.Until(t, name, 30*time.Second, func() bool { return metricValueOr(n.testServer, name) == 1 })
	}

	// Nothing was written in anyone else's name: the only new audit rows
	// are denials of proven callers (the service, the other patient), the
	// service's with the address of its connection, not the one it
	// claimed; the back-dated append is not there; the care team is as it
	// was; the node serves.
	rows, err := n.db.Pool.Query(context.Background(), `SELECT subject, role, outcome, source_address, occurred_at FROM audit_events
		WHERE patient_id = $1 ORDER BY occurred_at OFFSET $2`, patientID, rowsBefore)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var subject, role, outcome, source string
		var at time.Time
		if err := rows.Scan(&subject, &role, &outcome, &source, &at); err != nil {
			t.Fatal(err)
		}
		if outcome != "denied" || subject == patientID || subject == doctorID || time.Since(at) > time.Hour ||
			role == "service" && !strings.HasPrefix(source, "127.0.0.1:") {
			t.Errorf("audit event after the attempts: subject %s role %s outcome %s source %s at %v; want denials of the proven callers", subject, role, outcome, source, at)
		}
	}
	rows.Close()
	r = n.do("GET", "/v1/patients/"+patientID+"/care-team", doctor, nil)
	expect(t, "care team", r, 200)
	if members := r.json(t)["members"].([]any); len(members) != 1 {
		t.Errorf("care team = %s, want the doctor alone", r.body)
	}
	expect(t, "a patient read after the attempts", n.do("GET", "/v1/patients/"+patientID, doctor, nil), 200)
	expect(t, "readyz", n.do("GET", "/readyz", "", nil), 200)
	for _, reason := range []string{"no_token", "invalid_token", "service_not_itself", "member_only"} {
		name := `caregrid_grain_requests_unproven_total{reason="` + reason + `"}`
		if metricValueOr(n.testServer, name) == 0 {
			t.Errorf("%s not counted", name)
		}
	}
}

// metricValueOr is a labelled series' value on /metrics, 0 when absent.
func metricValueOr(s *testServer, series string) float64 {
	r := s.do("GET", "/metrics", "", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return 0
}

// TestAnInternalServiceThroughTheClientPackage runs the example pharmacy
// (cmd/caregrid-pharmacy) as its own process with its own certificate and
// client credentials: it reads and dispenses a prescription, which the
// audit trail records under the pharmacy with the address its connection
// came from, and it is refused the patient's visits.
func TestAnInternalServiceThroughTheClientPackage(t *testing.T) {
	n := startTrustedNode(t)
	doctorID := workingDoctor(t, n.testServer)
	patientID := treatedPatient(t, n.testServer, doctorID)
	doctor := n.token(messages.Role_ROLE_DOCTOR, doctorID)
	r := n.do("POST", "/v1/prescriptions", doctor, prescriptionBody(patientID, "N02BE01", "Paracetamol"))
	expect(t, "prescribe", r, 201)
	rx := decodePrescription(t, r).ID

	pharmacyID, secret := n.serviceClient("service", "pharmacy")
	cert, err := devcerts.Issue(n.certs.CA, n.certs.CAKey, n.dir, "pharmacy", cluster.ServiceName(pharmacyID), nil)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildPharmacy(t)
	pharmacy := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--members", n.remoting, "--tls-ca", n.certs.CA, "--tls-cert", cert.Cert, "--tls-key", cert.Key,
			"--token-url", n.base + identity.PathPrefix + "/oauth/token", "--client-id", pharmacyID}, args...)...)
		cmd.Env = append(os.Environ(), "CAREGRID_CLIENT_SECRET="+secret)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if reports := raceReports(stderr.String()); len(reports) > 0 {
			t.Errorf("the pharmacy reported a data race:\n%s", reports[0])
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}

	out, errOut, code := pharmacy("get", rx)
	if code != 0 || !strings.Contains(out, `"id":"`+rx+`"`) || !strings.Contains(out, `"status":"PRESCRIPTION_STATUS_ACTIVE"`) {
		t.Fatalf("get: exit %d, %s %s", code, out, errOut)
	}
	out, errOut, code = pharmacy("dispense", rx, "10 tablets", "pharmacy-dispense-1")
	if code != 0 || !strings.Contains(out, `"dispenses"`) {
		t.Fatalf("dispense: exit %d, %s %s", code, out, errOut)
	}
	out, errOut, code = pharmacy("visits", patientID)
	if code != 3 || out != "" || !strings.Contains(errOut, "PERMISSION_DENIED") {
		t.Fatalf("visits: exit %d, stdout %q, stderr %s; want refused (3)", code, out, errOut)
	}
	var subject, client, source string
	if err := n.db.Pool.QueryRow(context.Background(), `SELECT subject, client, source_address FROM audit_events
		WHERE resource_id = $1 AND action = 'dispense-prescription' AND outcome = 'success'`, rx).Scan(&subject, &client, &source); err != nil {
		t.Fatalf("the dispense's audit event: %v", err)
	}
	if client != pharmacyID || !strings.HasPrefix(source, "127.0.0.1:") {
		t.Errorf("dispense audited as client %q from %q; want the pharmacy from its connection's address", client, source)
	}
	r = n.do("GET", "/v1/prescriptions/"+rx, doctor, nil)
	expect(t, "the prescription after the dispense", r, 200)
	if dispenses, _ := r.json(t)["dispenses"].([]any); len(dispenses) != 1 {
		t.Errorf("after the pharmacy's dispense: %s", r.body)
	}
}

// buildPharmacy builds the example service (with -race when the tests
// run with it, so its races show too).
func buildPharmacy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caregrid-pharmacy")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../caregrid-pharmacy")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the example: %v\n%s", err, out)
	}
	return bin
}

// TestAGrainRefusesAnExpiredToken: a token that was good when a member
// relayed it once is refused by the grain once it has expired (by the
// provider's clock, which the test moves), however the Caller it travels in
// is dressed; the edge refuses it too.
func TestAGrainRefusesAnExpiredToken(t *testing.T) {
	clock := &testClock{}
	is := startIdentityServer(t, func(c *identity.Config) { c.Now = clock.Now })
	s := is.testServer
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	r := s.do("POST", "/v1/patients", desk, patientBody(nextIDNP()))
	expect(t, "register", r, 201)
	id := r.json(t)["id"].(string)
	member, err := cluster.Start(context.Background(), cluster.Config{Name: s.cluster, Host: "127.0.0.1", Client: true,
		Peers: []string{s.remoting}, TLS: prooftest.TLS(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { member.Stop(false) })
	get := func() error {
		_, err := messages.GetPatientGrainClient(member.Cluster, id).Get(&messages.GetPatientRequest{Caller: &messages.Caller{
			Subject: "someone", Role: messages.Role_ROLE_ADMIN, Token: desk}}, cluster.CallOptions(5*time.Second)...)
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("the live token relayed by a member: %v", err)
	}
	clock.Shift(16 * time.Minute) // past the default lifetime (15 min) and the verifier's 30 s leeway
	if err := get(); !messages.IsUnproven(err) {
		t.Fatalf("the expired token relayed by a member: %v, want UNPROVEN", err)
	}
	expect(t, "the expired token at the edge", s.do("GET", "/v1/patients/"+id, desk, nil), 401)
}
