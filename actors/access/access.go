// Package access decides who may do what to a patient's record. It is pure:
// no I/O, no clock; grains call it and record its decision in the audit
// trail. Relationship and consent rules join here as they arrive.
package access

import (
	"slices"

	"github.com/caregrid/caregrid/messages"
)

// Decision is an access decision with the reason for a refusal (safe to
// show and to audit: it names no personal data).
type Decision struct {
	Allowed bool
	Reason  string
}

var allow = Decision{Allowed: true}

func deny(reason string) Decision { return Decision{Reason: reason} }

func isStaff(r messages.Role) bool {
	switch r {
	case messages.Role_ROLE_DOCTOR, messages.Role_ROLE_RECEPTIONIST, messages.Role_ROLE_ADMIN:
		return true
	}
	return false
}

func isSelf(c *messages.Caller, patientID string) bool {
	return c.GetRole() == messages.Role_ROLE_PATIENT && c.GetSubject() != "" && c.GetSubject() == patientID
}

// ClinicalFields are the patient record's fields that are clinical data.
// Receptionists and admins work with the rest (demographics) only.
var ClinicalFields = []string{"blood_type", "allergies"}

func isClinical(path string) bool { return slices.Contains(ClinicalFields, path) }

// PatientView is how much of a patient's record a caller may see.
type PatientView int

const (
	ViewNone PatientView = iota
	// ViewDemographics: identity and contact, no clinical fields.
	ViewDemographics
	// ViewFull: the whole record.
	ViewFull
)

// RegisterPatient: receptionists, doctors and admins register patients;
// only doctors may record clinical data while doing so. (Patients'
// self-registration links an account to an existing record.)
func RegisterPatient(c *messages.Caller, withClinical bool) Decision {
	switch {
	case !isStaff(c.GetRole()):
		return deny("only staff may register patients")
	case withClinical && c.GetRole() != messages.Role_ROLE_DOCTOR:
		return deny("only doctors record clinical data (blood type, allergies)")
	}
	return allow
}

// ReadPatient: the patient themself and a doctor who treats them (has an
// appointment with them) see the whole record; receptionists and admins
// see demographics; other doctors nothing.
func ReadPatient(c *messages.Caller, patientID string, treats bool) (PatientView, Decision) {
	switch {
	case isSelf(c, patientID), c.GetRole() == messages.Role_ROLE_DOCTOR && treats:
		return ViewFull, allow
	case c.GetRole() == messages.Role_ROLE_RECEPTIONIST, c.GetRole() == messages.Role_ROLE_ADMIN:
		return ViewDemographics, allow
	case c.GetRole() == messages.Role_ROLE_DOCTOR:
		return ViewNone, deny("a doctor reads only the records of patients they have an appointment with")
	}
	return ViewNone, deny("a patient may read only their own record")
}

// ReadPatientLimited: a doctor who would treat the patient, but whom the
// patient limited to demographics, sees what the desk sees.
func ReadPatientLimited(c *messages.Caller) (PatientView, Decision) {
	if c.GetRole() == messages.Role_ROLE_DOCTOR {
		return ViewDemographics, allow
	}
	return ViewNone, deny("a doctor reads only the records of patients they have an appointment with")
}

// SelfUpdatable lists what a patient may change in their own record: how to
// reach them. Clinical and identity fields are changed by staff.
var SelfUpdatable = []string{"phone", "email"}

// UpdatePatient: a doctor who treats the patient changes any field;
// receptionists and admins the demographics; the patient themself only
// their contact details.
func UpdatePatient(c *messages.Caller, patientID string, paths []string, treats bool) Decision {
	switch {
	case c.GetRole() == messages.Role_ROLE_DOCTOR && treats:
		return allow
	case c.GetRole() == messages.Role_ROLE_DOCTOR:
		return deny("a doctor changes only the records of patients they have an appointment with")
	case c.GetRole() == messages.Role_ROLE_RECEPTIONIST, c.GetRole() == messages.Role_ROLE_ADMIN:
		if slices.ContainsFunc(paths, isClinical) {
			return deny("only a treating doctor changes clinical data (blood type, allergies)")
		}
		return allow
	case !isSelf(c, patientID):
		return deny("a patient may change only their own record")
	}
	for _, p := range paths {
		if !slices.Contains(SelfUpdatable, p) {
			return deny("a patient may change only phone and email")
		}
	}
	return allow
}

// ReadPatientAppointments: the patient, receptionists, admins and a doctor
// who treats the patient.
func ReadPatientAppointments(c *messages.Caller, patientID string, treats bool) Decision {
	switch {
	case isSelf(c, patientID), c.GetRole() == messages.Role_ROLE_DOCTOR && treats,
		c.GetRole() == messages.Role_ROLE_RECEPTIONIST, c.GetRole() == messages.Role_ROLE_ADMIN:
		return allow
	}
	return deny("only the patient, their doctors, receptionists and admins list a patient's appointments")
}

// ReadAccessLog: the patient themself and admins see who accessed a record.
func ReadAccessLog(c *messages.Caller, patientID string) Decision {
	if isSelf(c, patientID) || c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only the patient and admins may read a record's access log")
}

// known reports whether c acts as any known role.
func known(c *messages.Caller) bool {
	return c.GetRole() != messages.Role_ROLE_UNSPECIFIED && c.GetSubject() != ""
}

// ReadDirectory: every signed-in user sees doctors, their hours and free
// slots, and clinics: patients choose whom to book with.
func ReadDirectory(c *messages.Caller) Decision {
	if known(c) {
		return allow
	}
	return deny("sign in to read the directory")
}

// ManageDirectory: admins create clinics and doctors and change profiles.
func ManageDirectory(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins manage clinics and doctors")
}

// SetAvailability: admins, receptionists, and the doctor themself.
func SetAvailability(c *messages.Caller, doctorID string) Decision {
	switch {
	case c.GetRole() == messages.Role_ROLE_ADMIN, c.GetRole() == messages.Role_ROLE_RECEPTIONIST:
		return allow
	case c.GetRole() == messages.Role_ROLE_DOCTOR && c.GetSubject() != "" && c.GetSubject() == doctorID:
		return allow
	}
	return deny("only admins, receptionists and the doctor themself set working hours")
}

// BookFor: a patient books, reschedules and cancels for themself;
// receptionists, doctors and admins for any patient.
func BookFor(c *messages.Caller, patientID string) Decision {
	if isSelf(c, patientID) || isStaff(c.GetRole()) {
		return allow
	}
	return deny("a patient may book only for themself")
}

func isDoctor(c *messages.Caller, doctorID string) bool {
	return c.GetRole() == messages.Role_ROLE_DOCTOR && c.GetSubject() != "" && c.GetSubject() == doctorID
}

// ReadAppointment: the patient, the appointment's doctor, receptionists
// and admins. Other doctors see it only as busy time on an agenda.
func ReadAppointment(c *messages.Caller, patientID, doctorID string) Decision {
	switch {
	case isSelf(c, patientID), isDoctor(c, doctorID),
		c.GetRole() == messages.Role_ROLE_RECEPTIONIST, c.GetRole() == messages.Role_ROLE_ADMIN:
		return allow
	}
	return deny("only the patient, their doctor, receptionists and admins see an appointment")
}

// CheckIn and NoShow: the front desk (receptionists), admins and the
// appointment's doctor record arrivals and absences.
func CheckIn(c *messages.Caller, doctorID string) Decision {
	switch {
	case isDoctor(c, doctorID), c.GetRole() == messages.Role_ROLE_RECEPTIONIST, c.GetRole() == messages.Role_ROLE_ADMIN:
		return allow
	}
	return deny("only receptionists, admins and the appointment's doctor record arrivals")
}

// Complete: the appointment's doctor (or an admin correcting a record)
// closes a visit.
func Complete(c *messages.Caller, doctorID string) Decision {
	if isDoctor(c, doctorID) || c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only the appointment's doctor completes it")
}

// AgendaView is how much of a doctor's agenda a caller sees.
type AgendaView int

const (
	AgendaDenied AgendaView = iota
	// AgendaBusy: times and status only (another doctor planning).
	AgendaBusy
	// AgendaFull: patients and reasons too.
	AgendaFull
)

// ReadAgenda: a doctor sees their own agenda in full, receptionists and
// admins every agenda in full, other doctors only busy times; patients none.
func ReadAgenda(c *messages.Caller, doctorID string) (AgendaView, Decision) {
	switch {
	case isDoctor(c, doctorID), c.GetRole() == messages.Role_ROLE_RECEPTIONIST, c.GetRole() == messages.Role_ROLE_ADMIN:
		return AgendaFull, allow
	case c.GetRole() == messages.Role_ROLE_DOCTOR:
		return AgendaBusy, allow
	}
	return AgendaDenied, deny("patients do not read doctors' agendas")
}

// ReadAccessGrants: the patient themself sees who may read their record
// and why; receptionists and admins on their behalf (audited, as any
// read). Doctors do not: who else treats a patient is not theirs to list.
func ReadAccessGrants(c *messages.Caller, patientID string) Decision {
	if isSelf(c, patientID) || c.GetRole() == messages.Role_ROLE_RECEPTIONIST || c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only the patient, receptionists and admins see who may read a record")
}

// ManageRestrictions: the patient themself restricts who may read their
// record; receptionists and admins on their behalf (audited). Never a
// doctor: he would lift his own block.
func ManageRestrictions(c *messages.Caller, patientID string) Decision {
	if isSelf(c, patientID) || c.GetRole() == messages.Role_ROLE_RECEPTIONIST || c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only the patient, receptionists and admins restrict who may read a record")
}

// BreakGlass: any doctor may open a record in an emergency, stating why;
// the grant is time-limited, in the patient's access log and reviewed.
func BreakGlass(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_DOCTOR && c.GetSubject() != "" {
		return allow
	}
	return deny("only doctors open a record in an emergency")
}

// ReviewEmergencyAccess: admins (the privacy officers) review emergency
// accesses.
func ReviewEmergencyAccess(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins review emergency accesses")
}

// ExerciseDataRights: the patient themself asks for a copy of their data
// (GDPR art. 15 and 20) or for erasure (art. 17); receptionists file it for
// them at the desk. Admins decide on erasures (ReviewErasure), they do not
// ask for them: a privacy officer does not both ask and approve.
func ExerciseDataRights(c *messages.Caller, patientID string) Decision {
	if isSelf(c, patientID) || c.GetRole() == messages.Role_ROLE_RECEPTIONIST {
		return allow
	}
	return deny("only the patient, or a receptionist for them, asks for their data or its erasure")
}

// ReviewErasure: admins (the privacy officers) approve or refuse erasures.
func ReviewErasure(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins review erasure requests")
}

// PlaceLegalHold: admins place and lift legal holds.
func PlaceLegalHold(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins place or lift a legal hold")
}

// ManageAccounts: admins create, lock, unlock and reset accounts.
func ManageAccounts(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins manage accounts")
}

// ViewCluster: admins (the operators) see the cluster's members. Not
// services: a pharmacy's client has no business with the topology.
func ViewCluster(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins see the cluster")
}

// ReadAuditTrail: the whole audit trail (its search, exports and checks)
// is for admins; a patient reads their own access log instead.
func ReadAuditTrail(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins search the audit trail")
}

// ReadAnalytics: the network's figures (appointments, utilisation,
// diagnoses counted) are for admins.
func ReadAnalytics(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins see the analytics")
}

// ChangeCareTeam: receptionists and admins record care relationships. Not
// doctors: a doctor adding themself would grant their own access.
func ChangeCareTeam(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_RECEPTIONIST || c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only receptionists and admins change a patient's care team")
}

// RecordClinical: a doctor who treats the patient records visits,
// diagnoses and other clinical data.
func RecordClinical(c *messages.Caller, treats bool) Decision {
	if c.GetRole() == messages.Role_ROLE_DOCTOR && treats {
		return allow
	}
	return deny("only a doctor who treats the patient records clinical data")
}

// ReadClinical: the patient themself and doctors who treat them read
// clinical records; receptionists and admins do not.
func ReadClinical(c *messages.Caller, patientID string, treats bool) Decision {
	if isSelf(c, patientID) || (c.GetRole() == messages.Role_ROLE_DOCTOR && treats) {
		return allow
	}
	return deny("only the patient and doctors who treat them read clinical records")
}

// ReadPrescription: the patient, doctors who treat them, and services (a
// pharmacy system reads what it dispenses).
func ReadPrescription(c *messages.Caller, patientID string, treats bool) Decision {
	if c.GetRole() == messages.Role_ROLE_SERVICE && c.GetSubject() != "" {
		return allow
	}
	return ReadClinical(c, patientID, treats)
}

// ListPrescriptions: the patient and doctors who treat them list every
// prescription; a pharmacy service only the active ones (what it may
// dispense, found by the patient's IDNP at the counter), never the history.
func ListPrescriptions(c *messages.Caller, patientID string, treats bool, status messages.PrescriptionStatus) Decision {
	if c.GetRole() == messages.Role_ROLE_SERVICE && c.GetSubject() != "" {
		if status == messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE {
			return allow
		}
		return deny("pharmacy services list only active prescriptions")
	}
	return ReadClinical(c, patientID, treats)
}

// DispensePrescription: a doctor who treats the patient (a ward's own
// stock) and services (a pharmacy system). Patients, receptionists and
// admins do not dispense.
func DispensePrescription(c *messages.Caller, treats bool) Decision {
	if (c.GetRole() == messages.Role_ROLE_SERVICE && c.GetSubject() != "") || (c.GetRole() == messages.Role_ROLE_DOCTOR && treats) {
		return allow
	}
	return deny("only a doctor who treats the patient or a pharmacy service dispenses")
}

// Prescription actions, for PrescriptionGate.
const (
	PrescriptionCreate   = "create"
	PrescriptionRead     = "read"
	PrescriptionDispense = "dispense"
	PrescriptionCancel   = "cancel"
)

// PrescriptionGate refuses the roles that never take part in action, before
// the prescription is looked up, so they learn nothing about it (not even
// that it exists). Who of the rest may act is decided on the prescription:
// RecordClinical, ReadPrescription, DispensePrescription.
func PrescriptionGate(c *messages.Caller, action string) Decision {
	if !known(c) {
		return deny("not signed in")
	}
	role := c.GetRole()
	switch action {
	case PrescriptionRead:
		if role == messages.Role_ROLE_PATIENT || role == messages.Role_ROLE_DOCTOR || role == messages.Role_ROLE_SERVICE {
			return allow
		}
		return deny("only the patient, doctors who treat them and pharmacy services read prescriptions")
	case PrescriptionDispense:
		if role == messages.Role_ROLE_DOCTOR || role == messages.Role_ROLE_SERVICE {
			return allow
		}
		return deny("only a doctor who treats the patient or a pharmacy service dispenses")
	case PrescriptionCreate, PrescriptionCancel:
		if role == messages.Role_ROLE_DOCTOR {
			return allow
		}
		return deny("only a doctor who treats the patient prescribes or cancels")
	}
	return deny("unknown action")
}

// PurposeOf is the HL7 PurposeOfUse recorded for a caller in role: a
// patient's own request (PATRQT), or treatment (TREAT) for everyone else.
// It is derived from the proven role, never taken from a request: the
// purpose will decide access (an emergency override is ETREAT), so only a
// verified source may set another one.
func PurposeOf(role messages.Role) string {
	if role == messages.Role_ROLE_PATIENT {
		return "PATRQT"
	}
	return "TREAT"
}

// SearchPatients: staff find patients (demographics only, and every
// patient listed sees the search in their access log); patients and
// services do not search the register.
func SearchPatients(c *messages.Caller) Decision {
	if isStaff(c.GetRole()) && c.GetSubject() != "" {
		return allow
	}
	return deny("only receptionists, doctors and admins search for patients")
}

// ManageNotifications: the patient themself chooses how they are told;
// receptionists and admins set it for them at the desk (audited).
func ManageNotifications(c *messages.Caller, patientID string) Decision {
	if isSelf(c, patientID) || c.GetRole() == messages.Role_ROLE_RECEPTIONIST || c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only the patient, receptionists and admins set how a patient is told")
}

// ReadNotifications: what was sent to a patient is seen by the patient,
// by receptionists and admins (who answer "I got no reminder"), and by the
// doctors who treat them.
func ReadNotifications(c *messages.Caller, patientID string, treats bool) Decision {
	if isSelf(c, patientID) || c.GetRole() == messages.Role_ROLE_RECEPTIONIST || c.GetRole() == messages.Role_ROLE_ADMIN ||
		(c.GetRole() == messages.Role_ROLE_DOCTOR && treats) {
		return allow
	}
	return deny("only the patient, receptionists, admins and doctors who treat them see the patient's notifications")
}

// ManageNotificationDelivery: admins (operators) see the dead letters and
// send them again, and set clinics' reminder times.
func ManageNotificationDelivery(c *messages.Caller) Decision {
	if c.GetRole() == messages.Role_ROLE_ADMIN {
		return allow
	}
	return deny("only admins manage notification delivery")
}
