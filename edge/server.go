// Package edge is caregrid's HTTP API: a Fiber app whose handlers decode and
// validate requests, build the protobuf message with the Caller, call the
// grain and map its reply or typed error to HTTP (problem.go). Handlers hold
// no domain rules; access is decided, and audited, by the grain.
package edge

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/edge/locale"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/internal/tracing"
	"github.com/caregrid/caregrid/messages"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/text/language"
)

// MaxBodyBytes bounds every request body; larger ones get 413.
const MaxBodyBytes = 64 << 10

// Config wires the edge to the rest of the node.
type Config struct {
	// HTTPS is set when the public URL is https: answers then carry HSTS.
	HTTPS bool
	// DefaultLocale is the problems' language when Accept-Language names
	// no supported one (zero: English).
	DefaultLocale language.Tag
	Cluster       *actorcluster.Cluster
	Auth          Authenticator
	// Ready reports whether the node can serve (database and cluster).
	Ready func(context.Context) error
	// Tracing: each request is a span, continued in the grains it calls
	// (internal/tracing; off: no span is made).
	Tracing bool
	// Analytics serves the analytics routes (nil: 503).
	Analytics Analytics
	// AuditTrail serves the audit reports (nil: 503).
	AuditTrail AuditTrail
	// ClusterView is this node's view of the cluster (nil: not served).
	ClusterView func() cluster.View
	Logger      *slog.Logger
	// GrainTimeout bounds one grain request.
	GrainTimeout time.Duration
	// Metrics is where the edge registers its metrics; nil: a private registry.
	Metrics *prometheus.Registry
	// Directory finds the calendar of an appointment.
	Directory Directory
	// IDKey keys the ids of resources created with an Idempotency-Key
	// (newID); every node of a cluster must have the same (nil: such
	// requests answer 503).
	IDKey []byte
	// Slots answers GET /v1/slots from the slot finder's read model.
	Slots SlotFinder
	// Search answers GET /v1/patients from the search read model, and
	// Audit records each patient listed (nil: the route answers 503).
	Search PatientSearch
	Audit  *audit.Recorder
	// Lists are the doctor and clinic directories (nil: those routes answer 503).
	Lists DirectoryLists
	// Names puts names beside ids in answers people read (nil: ids alone).
	Names Names
	// Reviews is the review queue of emergency accesses (nil: 503).
	Reviews Reviews
	// Erasures is the review queue of erasure requests (nil: 503).
	Erasures Erasures
	// Exports serves export downloads (nil: 503).
	Exports Exports
	// AuditKeys publishes the audit signing keys (nil: 503).
	AuditKeys AuditKeyList
	// Sessions serves /v1/me/sessions (nil: no identity provider).
	Sessions Sessions
	// Accounts serves /v1/accounts (nil: no identity provider).
	Accounts Accounts
	// Mounts are net/http handlers served beside the API (the OpenID Provider).
	Mounts []Mount
	// RateLimits are the request budgets (nil: none).
	RateLimits *RateLimits
	// Documents configures document uploads (nil: the document routes answer 503).
	Documents *Documents
	// Notifications serves push subscriptions, dead letters and clinics'
	// reminder times (nil: those routes answer 503); VAPIDPublicKey is
	// the key browsers subscribe with (""; no push); DefaultReminders the
	// reminder times of clinics that set none.
	Notifications    Notifications
	VAPIDPublicKey   string
	DefaultReminders []int32
}

// Server is the HTTP edge of one node.
type Server struct {
	cfg     Config
	app     *fiber.App
	metrics *httpMetrics
	owners  *appointmentOwners
}

// route is one row of the route table. Roles says who may call it (nil:
// anyone, no token); the grain enforces it and the finer rules, and audits.
type route struct {
	Method  string
	Path    string
	Roles   []messages.Role
	Summary string
	handler fiber.Handler
}

var (
	staff    = []messages.Role{messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_DOCTOR, messages.Role_ROLE_ADMIN}
	everyone = []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_DOCTOR, messages.Role_ROLE_ADMIN}
	admins   = []messages.Role{messages.Role_ROLE_ADMIN}
	// patientsOnly: a patient's own devices (push subscriptions).
	patientsOnly = []messages.Role{messages.Role_ROLE_PATIENT}
	// hoursKeepers: a doctor may set only their own hours (the grain checks).
	hoursKeepers = []messages.Role{messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_DOCTOR, messages.Role_ROLE_ADMIN}
	// deskAndAdmins: receptionists and admins (care teams: not doctors, who would grant themselves access).
	deskAndAdmins = []messages.Role{messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_ADMIN}
	// doctors and patientsAndDoctors: clinical records (the grain checks the relationship).
	doctors            = []messages.Role{messages.Role_ROLE_DOCTOR}
	patientsAndDoctors = []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_DOCTOR}
	// prescriptionReaders and dispensers: services are pharmacy systems.
	prescriptionReaders = []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_DOCTOR, messages.Role_ROLE_SERVICE}
	dispensers          = []messages.Role{messages.Role_ROLE_DOCTOR, messages.Role_ROLE_SERVICE}
	services            = []messages.Role{messages.Role_ROLE_SERVICE}
	// grantReaders see who may read a patient's record.
	grantReaders = []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_ADMIN}
	// closers: the appointment's doctor (the grain checks) and admins.
	closers = []messages.Role{messages.Role_ROLE_DOCTOR, messages.Role_ROLE_ADMIN}
)

// routes is the route table: every route the edge serves, in one place.
func (s *Server) routes() []route {
	return []route{
		{"GET", "/livez", nil, "Liveness: the process is up", s.livez},
		{"GET", "/readyz", nil, "Readiness: database and cluster are reachable", s.readyz},
		{"GET", "/metrics", nil, "Prometheus metrics", s.metricsHandler()},
		{"GET", "/openapi.json", nil, "This API's OpenAPI 3.1 document", s.openapi},
		{"GET", "/.well-known/caregrid-audit-keys", nil, "The public keys that sign the audit chains' checkpoints (Ed25519)", s.auditKeys},
		{"POST", "/v1/patients", staff, "Register a patient (clinical fields: doctors only)", s.registerPatient},
		{"GET", "/v1/patients", staff, "Find patients by name (any script, diacritics, typos), IDNP prefix or phone: demographics only, best match first; each patient listed sees the search in their access log", s.searchPatients},
		{"GET", "/v1/patients/:id", everyone, "Read a patient (patients: themselves; doctors: patients they have an appointment with; receptionists, admins: without clinical data)", s.getPatient},
		{"PATCH", "/v1/patients/:id", everyone, "Change a patient (patients: their phone and email; receptionists, admins: no clinical fields; doctors: patients they have an appointment with)", s.updatePatient},
		{"GET", "/v1/patients/:id/access-log", []messages.Role{messages.Role_ROLE_PATIENT, messages.Role_ROLE_ADMIN},
			"Who accessed this record (the patient themself and admins)", s.accessLog},
		{"POST", "/v1/clinics", admins, "Create a clinic", s.createClinic},
		{"GET", "/v1/clinics", everyone, "The clinics by name, ?q= a name in any spelling", s.listClinics},
		{"GET", "/v1/clinics/:id", everyone, "Read a clinic", s.getClinic},
		{"PATCH", "/v1/clinics/:id", admins, "Change a clinic's name, address or time zone (If-Match its version)", s.updateClinic},
		{"POST", "/v1/doctors", admins, "Create a doctor", s.createDoctor},
		{"GET", "/v1/doctors", everyone, "The doctors by family name, by ?specialty= and ?clinic=, ?q= a name in any spelling", s.listDoctors},
		{"GET", "/v1/doctors/:id", everyone, "Read a doctor", s.getDoctor},
		{"PATCH", "/v1/doctors/:id", admins, "Change a doctor's profile", s.updateDoctor},
		{"PUT", "/v1/doctors/:id/availability", hoursKeepers, "Set a doctor's working hours (the doctor themself, receptionists, admins)", s.setAvailability},
		{"GET", "/v1/doctors/:id/availability", everyone, "Read a doctor's working hours", s.getAvailability},
		{"GET", "/v1/doctors/:id/slots", everyone, "A doctor's free slots between from and to", s.doctorSlots},
		{"GET", "/v1/slots", everyone, "The earliest free slots across doctors, by specialty and clinic (from the read model)", s.findSlots},
		{"POST", "/v1/appointments", everyone, "Book an appointment (patients: only for themselves)", s.book},
		{"GET", "/v1/appointments", staff, "A day's appointments at a clinic or of a doctor (?clinic=, ?doctor=, ?date=, ?status=), by start, with names; other doctors' as times only; each patient listed sees it in their access log", s.listAppointments},
		{"GET", "/v1/appointments/:id", everyone, "Read an appointment (its patient, its doctor, receptionists, admins)", s.getAppointment},
		{"POST", "/v1/appointments/:id/cancel", everyone, "Cancel an appointment before it starts (patients: only their own)", s.transition(messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL)},
		{"POST", "/v1/appointments/:id/reschedule", everyone, "Move an appointment to another start (patients: only their own)", s.reschedule},
		{"POST", "/v1/appointments/:id/check-in", staff, "Record the patient's arrival (receptionists, admins, the appointment's doctor)", s.transition(messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN)},
		{"POST", "/v1/appointments/:id/complete", closers, "Complete a checked-in appointment (its doctor, admins)", s.transition(messages.AppointmentAction_APPOINTMENT_ACTION_COMPLETE)},
		{"POST", "/v1/appointments/:id/no-show", staff, "Record that the patient did not come (receptionists, admins, the appointment's doctor)", s.transition(messages.AppointmentAction_APPOINTMENT_ACTION_NO_SHOW)},
		{"GET", "/v1/patients/:id/appointments", everyone, "A patient's appointments in start order (patients: their own; doctors: patients they have an appointment with)", s.patientAppointments},
		{"POST", "/v1/patients/:id/visits", doctors, "Record a visit with its diagnoses (a doctor who treats the patient)", s.recordVisit},
		{"GET", "/v1/patients/:id/visits", patientsAndDoctors, "The patient's visits, newest first (the patient, doctors who treat them)", s.listVisits},
		{"POST", "/v1/patients/:id/vaccinations", doctors, "Record a vaccination (a doctor who treats the patient gave it)", s.recordVaccination},
		{"GET", "/v1/patients/:id/vaccinations", patientsAndDoctors, "The patient's vaccinations, newest first (the patient, doctors who treat them)", s.listVaccinations},
		{"GET", "/v1/patients/:id/clinical-history", patientsAndDoctors, "Every change of blood type and allergies, newest first (the patient, doctors who treat them)", s.clinicalHistory},
		{"GET", "/v1/patients/:id/timeline", patientsAndDoctors, "Visits, diagnoses, prescriptions, vaccinations and appointments merged, newest first (the patient, doctors who treat them)", s.timeline},
		{"GET", "/v1/patients/:id/prescriptions", patientsAndDoctors, "The patient's prescriptions, newest first, by ?status= (the patient, doctors who treat them)", s.listPrescriptions},
		{"POST", "/v1/prescriptions", doctors, "Prescribe: checked against the patient's active prescriptions and allergies; blocking warnings need an override reason (a doctor who treats the patient)", s.createPrescription},
		{"GET", "/v1/prescriptions", services, "A patient's active prescriptions by ?patient_idnp= and ?status=active (pharmacy services; in the patient's access log)", s.pharmacyPrescriptions},
		{"GET", "/v1/prescriptions/:id", prescriptionReaders, "Read a prescription (the patient, doctors who treat them, pharmacy services)", s.getPrescription},
		{"POST", "/v1/prescriptions/:id/dispense", dispensers, "Record a dispense; the last one allowed (1 + refills) completes it (doctors who treat the patient, pharmacy services)", s.dispensePrescription},
		{"POST", "/v1/prescriptions/:id/cancel", doctors, "Cancel an active prescription with a reason (a doctor who treats the patient)", s.cancelPrescription},
		{"POST", "/v1/patients/:id/documents", doctors, "Upload a document (multipart/form-data: file, title; PDF, JPEG or PNG by content; 20 MB) (a doctor who treats the patient)", s.uploadDocument},
		{"GET", "/v1/patients/:id/documents", patientsAndDoctors, "The patient's documents, newest first (the patient, doctors who treat them)", s.listDocuments},
		{"GET", "/v1/patients/:id/documents/:document", patientsAndDoctors, "Download a document's original bytes (the patient, doctors who treat them)", s.downloadDocument},
		{"GET", "/v1/patients/:id/access-grants", grantReaders, "Who may read the record now, why and until when: the care team and doctors with a granting appointment (the patient, receptionists, admins)", s.accessGrants},
		{"POST", "/v1/patients/:id/emergency-access", doctors, "Break the glass: read the record for 4 hours past any restriction, stating why; in the patient's access log and the review queue (any doctor)", s.emergencyAccess},
		{"GET", "/v1/reviews", admins, "The emergency accesses to review, oldest first, by ?status= (pending, approved, flagged, all)", s.listReviews},
		{"POST", "/v1/reviews/:id", admins, "Approve or flag an emergency access with a note; in the patient's access log", s.reviewEmergencyAccess},
		{"POST", "/v1/patients/:id/exports", dataRights, "Start an export of everything held about the patient (GDPR art. 15, 20): a ZIP of JSON per kind, documents' contents, the access log with its proofs; 202 with a single-use download link (the patient, receptionists for them)", s.startExport},
		{"GET", "/v1/patients/:id/exports/:export", dataRights, "An export's progress (the patient, and whoever asked for it)", s.getExport},
		{"GET", "/v1/exports/:export/download", nil, "Download an export's ZIP, once, with the token of the link its start answered; expires (the link is the credential)", s.downloadExport},
		{"POST", "/v1/patients/:id/erasure-requests", dataRights, "Ask for the patient's erasure (GDPR art. 17); waits for a privacy officer (the patient, receptionists for them)", s.requestErasure},
		{"GET", "/v1/patients/:id/erasure-requests/latest", dataRights, "The patient's latest erasure request: its state, what it waits for, its proof once erased (the patient, receptionists)", s.latestErasure},
		{"GET", "/v1/erasure-requests", admins, "The erasure requests, oldest first, by ?status= (pending, approved, refused, erased, all)", s.listErasures},
		{"POST", "/v1/erasure-requests/:id", admins, "Approve or refuse an erasure with a note; an approved one is carried out once no retention period, legal hold or appointment to come stands in its way", s.reviewErasure},
		{"PUT", "/v1/patients/:id/legal-hold", admins, "Place a legal hold: no erasure and no retention deletion while it stands", s.placeLegalHold},
		{"DELETE", "/v1/patients/:id/legal-hold", admins, "Lift the legal hold", s.liftLegalHold},
		{"GET", "/v1/patients/:id/restrictions", grantReaders, "The patient's restrictions on who may read the record, live and lifted, with who made each and when (the patient, receptionists, admins)", s.restrictions},
		{"POST", "/v1/patients/:id/restrictions", grantReaders, "Block a doctor or a clinic's doctors from the record, at once, whatever their appointments or care team (the patient, receptionists, admins)", s.restrict},
		{"DELETE", "/v1/patients/:id/restrictions/:restriction", grantReaders, "Lift a restriction; it stays in the history (the patient, receptionists, admins)", s.liftRestriction},
		{"GET", "/v1/patients/:id/care-team", everyone, "The doctors with a care relationship to the patient (who may list the patient's appointments)", s.careTeam},
		{"PUT", "/v1/patients/:id/care-team/:doctor", deskAndAdmins, "Add a doctor to the patient's care team (lets them read the record)", s.changeCareTeam(false)},
		{"DELETE", "/v1/patients/:id/care-team/:doctor", deskAndAdmins, "Remove a doctor from the patient's care team", s.changeCareTeam(true)},
		{"GET", "/v1/doctors/:id/appointments", staff, "A doctor's agenda between from and to (other doctors see times only)", s.doctorAgenda},
		{"GET", "/v1/me", everyone, "Who the access token is for", s.me},
		{"GET", "/v1/me/sessions", everyone, "The caller's live login sessions", s.mySessions},
		{"DELETE", "/v1/me/sessions/:id", everyone, "End one of the caller's own sessions (and every token of it)", s.endMySession},
		{"POST", "/v1/accounts", admins, "Create an account; its owner gets an email link to choose a password", s.createAccount},
		{"GET", "/v1/accounts", admins, "The accounts by username, by ?role=, ?status= (active, disabled, locked, unverified) and ?q= (username, email or name)", s.listAccounts},
		{"GET", "/v1/accounts/:id", admins, "Read an account (no secrets)", s.getAccount},
		{"PATCH", "/v1/accounts/:id", admins, "Set a receptionist's or admin's display name and clinic (doctors and patients: from their record)", s.updateAccount},
		{"POST", "/v1/accounts/:id/unlock", admins, "Lift a lock after failed logins", s.accountAction("unlock")},
		{"POST", "/v1/accounts/:id/disable", admins, "Disable an account and end its sessions", s.accountAction("disable")},
		{"POST", "/v1/accounts/:id/enable", admins, "Enable a disabled account", s.accountAction("enable")},
		{"POST", "/v1/accounts/:id/reset-totp", admins, "Remove the second factor; the next login enrols a new one", s.accountAction("reset-totp")},
		{"POST", "/v1/accounts/:id/send-reset", admins, "Email the owner a new link to choose a password", s.accountAction("send-reset")},
		{"GET", "/v1/clients", admins, "The OpenID clients: applications and service clients (no secrets)", s.listClients},
		{"POST", "/v1/clients", admins, "Register a service client (a pharmacy or laboratory system) and the account it acts as; its secret is answered once", s.createServiceClient},
		{"GET", "/v1/patients/:id/notification-preferences", grantReaders, "How the patient wants to be told: language, channels, reminders, quiet hours (the patient, receptionists, admins)", s.notificationPreferences},
		{"PUT", "/v1/patients/:id/notification-preferences", grantReaders, "Set how the patient wants to be told; security messages are sent whatever is chosen (the patient, receptionists, admins)", s.setNotificationPreferences},
		{"GET", "/v1/patients/:id/notifications", everyone, "What was sent to the patient, when, over which channel, and its delivery state, newest first; never the content (the patient, receptionists, admins, doctors who treat them)", s.patientNotifications},
		{"POST", "/v1/me/push-subscriptions", patientsOnly, "Receive push notifications in this browser: its PushSubscription (patients)", s.addPushSubscription},
		{"DELETE", "/v1/me/push-subscriptions/:id", patientsOnly, "Stop push notifications to one of the caller's browsers", s.deletePushSubscription},
		{"GET", "/v1/push/vapid-public-key", nil, "The application server key browsers subscribe to push notifications with (VAPID)", s.vapidKey},
		{"GET", "/v1/notifications", admins, "Notification delivery for operators, oldest first, by ?status= (dead by default; pending, sending, sent, delivered, skipped, all)", s.listNotifications},
		{"POST", "/v1/notifications/:id/retry", admins, "Send a dead notification again from its first try", s.retryNotification},
		{"GET", "/v1/clinics/:id/reminders", admins, "How long before an appointment the clinic's patients are reminded", s.clinicReminders},
		{"PUT", "/v1/clinics/:id/reminders", admins, "Set the clinic's reminder times in minutes before the appointment (null: the default)", s.setClinicReminders},
		{"GET", "/v1/audit-events", admins, "Search the whole audit trail by ?patient=, ?actor=, ?action=, ?outcome=, ?from=, ?to=, newest first; ?format=csv downloads it as CSV (at most 50,000 rows); the search is itself audited (admins)", s.searchAuditTrail},
		{"GET", "/v1/audit-verifications", admins, "The latest checks of the audit trail's chains and signed checkpoints, newest first (admins)", s.auditVerifications},
		{"POST", "/v1/audit-verifications", admins, "Check the whole audit trail now, as caregrid audit verify does; 202, the result shows in the list (admins)", s.checkAuditTrail},
		{"GET", "/v1/analytics/appointments", admins, "Appointments per day, week or month between ?from= and ?to= (dates), at ?clinic=, of ?doctor=, and per doctor: utilisation (booked of available minutes), cancellations, no-shows, median lead time; ?format=csv; no patient named (admins)", s.appointmentAnalytics},
		{"GET", "/v1/analytics/diagnoses", admins, "The diagnosis codes recorded most often between ?from= and ?to=, at ?clinic=, by ?doctor=: counts only, each at least 3 (admins)", s.diagnosisAnalytics},
		{"GET", "/v1/ops/cluster", admins, "This node's view of the cluster: every member's id, address, roles, status and grain activations by kind", s.clusterView},
	}
}

// Route describes one served route: method, Fiber path and who may call it
// (nil: public). Tests and documentation read it.
type Route struct {
	Method string
	Path   string
	Roles  []messages.Role
}

// RouteTable lists every route the edge serves.
func (s *Server) RouteTable() []Route {
	var out []Route
	for _, r := range s.routes() {
		out = append(out, Route{Method: r.Method, Path: r.Path, Roles: r.Roles})
	}
	return out
}

// New builds the Fiber app.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GrainTimeout <= 0 {
		cfg.GrainTimeout = 5 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Documents != nil {
		docs := *cfg.Documents
		if docs.MaxBytes <= 0 {
			docs.MaxBytes = DefaultDocumentMaxBytes
		}
		if docs.Types == nil {
			docs.Types = DefaultDocumentTypes
		}
		cfg.Documents = &docs
	}
	if cfg.RateLimits != nil && cfg.RateLimits.Limiter == nil {
		limits := *cfg.RateLimits
		limits.Limiter = ratelimit.NewLocal(100_000)
		cfg.RateLimits = &limits
	}
	s := &Server{cfg: cfg, metrics: newHTTPMetrics(cfg.Metrics), owners: newAppointmentOwners(cfg.Directory)}
	s.app = fiber.New(fiber.Config{
		// Values from a Ctx are reused after the handler returns; immutable
		// strings make it safe to keep them in messages and logs.
		Immutable: true,
		// Bodies are streamed: fasthttp reads ahead at most BodyLimit, and
		// limitBody (request.go) enforces each route's limit, reading a
		// JSON body whole only once it is known to be within it; a document
		// upload is read by its handler, as it goes.
		StreamRequestBody:            true,
		BodyLimit:                    MaxBodyBytes,
		DisablePreParseMultipartForm: true,
		DisableStartupMessage:        true,
		ErrorHandler:                 s.handleError,
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  120 * time.Second,
	})
	// A panicking handler becomes a 500 problem instead of ending the process.
	s.app.Use(s.securityHeaders, s.requestID)
	if cfg.Tracing {
		s.app.Use(s.traceRequest)
	}
	s.app.Use(s.observe, recover.New(), s.checkRequest, s.limitAddress)
	for _, r := range s.routes() {
		h := r.handler
		if r.Roles != nil {
			s.app.Add(r.Method, r.Path, s.authenticate, s.limitSubject, h)
		} else {
			s.app.Add(r.Method, r.Path, h)
		}
	}
	for _, m := range cfg.Mounts {
		s.mount(m)
	}
	s.app.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	return s
}

// App is the Fiber app, for Listen and for tests (app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Shutdown stops accepting connections and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error { return s.app.ShutdownWithContext(ctx) }

func (s *Server) handleError(c *fiber.Ctx, err error) error {
	p := toProblem(err)
	if c.GetRespHeader(fiber.HeaderXRequestID) == "" {
		// Errors fasthttp raises before routing (body too large) skip the middleware.
		setRequestID(c)
	}
	if p.Status >= 500 {
		s.cfg.Logger.Error("request failed", "request_id", c.GetRespHeader(fiber.HeaderXRequestID),
			"method", c.Method(), "route", c.Route().Path, "status", p.Status, "error", err)
	}
	if p.retryAfter != "" {
		c.Set(fiber.HeaderRetryAfter, p.retryAfter)
	}
	if p.Status == fiber.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="caregrid"`)
	}
	// Title, detail and field messages in the caller's language
	// (Accept-Language, else the node's default); the type and the field
	// names are the stable names to act on. Texts the catalogue does not
	// have yet (the grains' details) stay English.
	tx := locale.For("", c.Get(fiber.HeaderAcceptLanguage), s.cfg.DefaultLocale)
	translated := *p // a copy: p may be shared
	translated.Title, translated.Detail = tx.T(p.Title), tx.Detail(p.Detail)
	if len(p.Errors) > 0 {
		translated.Errors = make([]FieldError, len(p.Errors))
		for i, fe := range p.Errors {
			translated.Errors[i] = FieldError{Field: fe.Field, Message: tx.Detail(fe.Message)}
		}
	}
	c.Set(fiber.HeaderContentLanguage, tx.Tag.String())
	c.Vary(fiber.HeaderAcceptLanguage)
	body, _ := c.App().Config().JSONEncoder(&translated)
	c.Set(fiber.HeaderContentType, "application/problem+json")
	return c.Status(p.Status).Send(body)
}

// securityHeaders go on every answer, errors included: responses carry
// health data and tokens, so no cache keeps them (a handler that serves
// something public, such as the OpenID discovery document, says so
// itself); JSON is never sniffed as something else; and with an https
// public URL, browsers are told to use https only.
func (s *Server) securityHeaders(c *fiber.Ctx) error {
	err := c.Next() // then: a mounted handler's own Cache-Control stands
	if len(c.Response().Header.Peek(fiber.HeaderCacheControl)) == 0 {
		c.Set(fiber.HeaderCacheControl, "no-store")
	}
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	if s.cfg.HTTPS {
		c.Set(fiber.HeaderStrictTransportSecurity, "max-age=31536000; includeSubDomains")
	}
	return err
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID gives every request an id of the edge's own making, returned
// as X-Request-Id and recorded in the audit trail. The client's own
// X-Request-Id is recorded beside it (when well-formed) but never taken
// as the id: anyone can write anything there.
func (s *Server) requestID(c *fiber.Ctx) error {
	setRequestID(c)
	return c.Next()
}

func setRequestID(c *fiber.Ctx) {
	c.Set(fiber.HeaderXRequestID, uuid.NewString())
}

// clientRequestID is the client's X-Request-Id, if well-formed.
func clientRequestID(c *fiber.Ctx) string {
	if id := c.Get(fiber.HeaderXRequestID); requestIDPattern.MatchString(id) {
		return id
	}
	return ""
}

const (
	principalKey = "principal"
	tokenKey     = "token"
)

// authenticate requires a valid bearer token and keeps its Principal.
func (s *Server) authenticate(c *fiber.Ctx) error {
	if s.cfg.Auth == nil {
		return unauthenticated("this server has no authenticator configured")
	}
	h := c.Get(fiber.HeaderAuthorization)
	token, ok := cutPrefixFold(h, "Bearer ")
	if !ok || token == "" {
		return unauthenticated("send an access token as 'Authorization: Bearer <token>'")
	}
	p, err := s.cfg.Auth.Authenticate(token)
	if errors.Is(err, ErrUnauthenticated) {
		return unauthenticated("the access token is not valid")
	}
	if err != nil {
		// The token could not be checked (its session's store is down): not the caller's fault.
		s.cfg.Logger.Error("authenticate", "error", err)
		p := problem(fiber.StatusServiceUnavailable, "auth-unavailable", "Authentication unavailable", "the access token could not be checked; retry")
		p.retryAfter = "1"
		return p
	}
	c.Locals(principalKey, p)
	// The token travels to the grain, which verifies it again (actors/proof).
	c.Locals(tokenKey, token) // Immutable: a copy already
	return c.Next()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// caller builds the Caller a grain request carries. The purpose of use
// follows from the proven role (access.PurposeOf); an X-Purpose-Of-Use
// header is not taken.
func (s *Server) caller(c *fiber.Ctx) (*messages.Caller, error) {
	p, _ := c.Locals(principalKey).(Principal)
	token, _ := c.Locals(tokenKey).(string)
	return &messages.Caller{
		Subject: p.Subject, Role: p.Role, Client: p.Client, PurposeOfUse: access.PurposeOf(p.Role),
		RequestId: c.GetRespHeader(fiber.HeaderXRequestID), ClientRequestId: clientRequestID(c), SourceAddress: c.IP(),
		Token: token, Traceparent: tracing.Traceparent(c.UserContext()),
	}, nil
}

func (s *Server) livez(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

func (s *Server) clusterView(c *fiber.Ctx) error {
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	if d := access.ViewCluster(caller); !d.Allowed {
		return forbidden(d.Reason)
	}
	if s.cfg.ClusterView == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "No cluster view", "this node does not report its cluster")
	}
	return c.JSON(s.cfg.ClusterView())
}

func (s *Server) readyz(c *fiber.Ctx) error {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			p := problem(fiber.StatusServiceUnavailable, "not-ready", "Not ready", err.Error())
			p.retryAfter = "1"
			return p
		}
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// etag is a resource version as a strong entity tag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// mayUpload reports whether an Authorization header proves a caller in the
// upload route's roles.
func (s *Server) mayUpload(authorization string) bool {
	token, ok := cutPrefixFold(authorization, "Bearer ")
	if !ok || token == "" || s.cfg.Auth == nil {
		return false
	}
	p, err := s.cfg.Auth.Authenticate(token)
	return err == nil && slices.Contains(doctors, p.Role)
}
