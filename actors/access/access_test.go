package access

import (
	"testing"

	"github.com/caregrid/caregrid/messages"
)

func caller(role messages.Role, sub string) *messages.Caller {
	return &messages.Caller{Role: role, Subject: sub}
}

func TestDecisions(t *testing.T) {
	const p1 = "p1"
	var (
		self     = caller(messages.Role_ROLE_PATIENT, p1)
		other    = caller(messages.Role_ROLE_PATIENT, "p2")
		doctor   = caller(messages.Role_ROLE_DOCTOR, "d1")
		recep    = caller(messages.Role_ROLE_RECEPTIONIST, "r1")
		admin    = caller(messages.Role_ROLE_ADMIN, "a1")
		service  = caller(messages.Role_ROLE_SERVICE, "svc")
		nobody   = caller(messages.Role_ROLE_UNSPECIFIED, p1)
		emptySub = caller(messages.Role_ROLE_PATIENT, "")
	)
	tests := []struct {
		name string
		got  Decision
		want bool
	}{
		{"register by receptionist", RegisterPatient(recep, false), true},
		{"register with allergies by receptionist", RegisterPatient(recep, true), false},
		{"register with allergies by doctor", RegisterPatient(doctor, true), true},
		{"register by admin", RegisterPatient(admin, false), true},
		{"register with allergies by admin", RegisterPatient(admin, true), false},
		{"register by patient", RegisterPatient(self, false), false},
		{"register by service", RegisterPatient(service, false), false},
		{"register by nobody", RegisterPatient(nobody, false), false},
		{"read self", read(ReadPatient(self, p1, false)), true},
		{"read other patient", read(ReadPatient(other, p1, false)), false},
		{"read with empty subject", read(ReadPatient(emptySub, "", false)), false},
		{"read by a treating doctor", read(ReadPatient(doctor, p1, true)), true},
		{"read by another doctor", read(ReadPatient(doctor, p1, false)), false},
		{"read by receptionist", read(ReadPatient(recep, p1, false)), true},
		{"read by unspecified role with matching subject", read(ReadPatient(nobody, p1, true)), false},
		{"self updates phone", UpdatePatient(self, p1, []string{"phone", "email"}, false), true},
		{"self updates allergies", UpdatePatient(self, p1, []string{"phone", "allergies"}, false), false},
		{"other patient updates phone", UpdatePatient(other, p1, []string{"phone"}, false), false},
		{"receptionist updates phone", UpdatePatient(recep, p1, []string{"phone", "family_name"}, false), true},
		{"receptionist updates allergies", UpdatePatient(recep, p1, []string{"allergies"}, false), false},
		{"admin updates blood type", UpdatePatient(admin, p1, []string{"blood_type"}, false), false},
		{"treating doctor updates allergies", UpdatePatient(doctor, p1, []string{"allergies"}, true), true},
		{"another doctor updates phone", UpdatePatient(doctor, p1, []string{"phone"}, false), false},
		{"appointments by treating doctor", ReadPatientAppointments(doctor, p1, true), true},
		{"appointments by another doctor", ReadPatientAppointments(doctor, p1, false), false},
		{"appointments by receptionist", ReadPatientAppointments(recep, p1, false), true},
		{"appointments by other patient", ReadPatientAppointments(other, p1, false), false},
		{"access log self", ReadAccessLog(self, p1), true},
		{"access log admin", ReadAccessLog(admin, p1), true},
		{"access log doctor", ReadAccessLog(doctor, p1), false},
		{"access log other patient", ReadAccessLog(other, p1), false},
		{"access grants self", ReadAccessGrants(self, p1), true},
		{"access grants receptionist", ReadAccessGrants(recep, p1), true},
		{"access grants admin", ReadAccessGrants(admin, p1), true},
		{"access grants doctor", ReadAccessGrants(doctor, p1), false},
		{"access grants other patient", ReadAccessGrants(other, p1), false},
		{"access grants service", ReadAccessGrants(service, p1), false},
		{"break glass doctor", BreakGlass(doctor), true},
		{"break glass receptionist", BreakGlass(recep), false},
		{"break glass patient", BreakGlass(self), false},
		{"review admin", ReviewEmergencyAccess(admin), true},
		{"review doctor", ReviewEmergencyAccess(doctor), false},
		{"restrictions self", ManageRestrictions(self, p1), true},
		{"restrictions receptionist", ManageRestrictions(recep, p1), true},
		{"restrictions doctor", ManageRestrictions(doctor, p1), false},
		{"restrictions other patient", ManageRestrictions(other, p1), false},
		{"directory by patient", ReadDirectory(self), true},
		{"directory by nobody", ReadDirectory(nobody), false},
		{"manage directory by admin", ManageDirectory(admin), true},
		{"manage directory by receptionist", ManageDirectory(recep), false},
		{"hours by receptionist", SetAvailability(recep, "d1"), true},
		{"hours by the doctor", SetAvailability(doctor, "d1"), true},
		{"hours by another doctor", SetAvailability(doctor, "d2"), false},
		{"hours by patient", SetAvailability(self, "d1"), false},
		{"prescription read by its patient", ReadPrescription(self, p1, false), true},
		{"prescription read by another patient", ReadPrescription(other, p1, false), false},
		{"prescription read by a treating doctor", ReadPrescription(doctor, p1, true), true},
		{"prescription read by another doctor", ReadPrescription(doctor, p1, false), false},
		{"prescription read by a pharmacy service", ReadPrescription(service, p1, false), true},
		{"prescription read by receptionist", ReadPrescription(recep, p1, false), false},
		{"prescription read by admin", ReadPrescription(admin, p1, false), false},
		{"active prescriptions listed by a pharmacy service", ListPrescriptions(service, p1, false, messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE), true},
		{"every prescription listed by a pharmacy service", ListPrescriptions(service, p1, false, messages.PrescriptionStatus_PRESCRIPTION_STATUS_UNSPECIFIED), false},
		{"completed prescriptions listed by a pharmacy service", ListPrescriptions(service, p1, false, messages.PrescriptionStatus_PRESCRIPTION_STATUS_COMPLETED), false},
		{"prescriptions listed by their patient", ListPrescriptions(self, p1, false, messages.PrescriptionStatus_PRESCRIPTION_STATUS_UNSPECIFIED), true},
		{"active prescriptions listed by a receptionist", ListPrescriptions(recep, p1, false, messages.PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE), false},
		{"dispense by a treating doctor", DispensePrescription(doctor, true), true},
		{"dispense by another doctor", DispensePrescription(doctor, false), false},
		{"dispense by a pharmacy service", DispensePrescription(service, false), true},
		{"dispense by the patient", DispensePrescription(self, false), false},
		{"dispense by receptionist", DispensePrescription(recep, false), false},
		{"dispense by admin", DispensePrescription(admin, false), false},
		{"prescribing gate: doctor", PrescriptionGate(doctor, PrescriptionCreate), true},
		{"prescribing gate: receptionist", PrescriptionGate(recep, PrescriptionCreate), false},
		{"prescribing gate: service", PrescriptionGate(service, PrescriptionCreate), false},
		{"reading gate: patient", PrescriptionGate(self, PrescriptionRead), true},
		{"reading gate: service", PrescriptionGate(service, PrescriptionRead), true},
		{"reading gate: admin", PrescriptionGate(admin, PrescriptionRead), false},
		{"dispensing gate: patient", PrescriptionGate(self, PrescriptionDispense), false},
		{"dispensing gate: service", PrescriptionGate(service, PrescriptionDispense), true},
		{"cancelling gate: service", PrescriptionGate(service, PrescriptionCancel), false},
		{"cancelling gate: doctor", PrescriptionGate(doctor, PrescriptionCancel), true},
		{"gate without a subject", PrescriptionGate(emptySub, PrescriptionRead), false},
		{"gate, unknown action", PrescriptionGate(doctor, "delete"), false},
	}
	for _, tt := range tests {
		if tt.got.Allowed != tt.want {
			t.Errorf("%s: allowed = %v, want %v", tt.name, tt.got.Allowed, tt.want)
		}
		if !tt.got.Allowed && tt.got.Reason == "" {
			t.Errorf("%s: a refusal must say why", tt.name)
		}
	}
}

// read keeps the decision of a (view, decision) pair.
func read(_ PatientView, d Decision) Decision { return d }

func TestPatientViews(t *testing.T) {
	for _, tt := range []struct {
		c      *messages.Caller
		treats bool
		want   PatientView
	}{
		{caller(messages.Role_ROLE_PATIENT, "p1"), false, ViewFull},
		{caller(messages.Role_ROLE_DOCTOR, "d1"), true, ViewFull},
		{caller(messages.Role_ROLE_DOCTOR, "d1"), false, ViewNone},
		{caller(messages.Role_ROLE_RECEPTIONIST, "r1"), true, ViewDemographics},
		{caller(messages.Role_ROLE_ADMIN, "a1"), true, ViewDemographics},
		{caller(messages.Role_ROLE_PATIENT, "p2"), false, ViewNone},
	} {
		if v, _ := ReadPatient(tt.c, "p1", tt.treats); v != tt.want {
			t.Errorf("ReadPatient(%s, treats=%v) view = %v, want %v", tt.c.Role.Name(), tt.treats, v, tt.want)
		}
	}
}

func TestAppointmentRules(t *testing.T) {
	const patientID, doctorID = "p-1", "d-1"
	self := &messages.Caller{Subject: patientID, Role: messages.Role_ROLE_PATIENT}
	otherPatient := &messages.Caller{Subject: "p-2", Role: messages.Role_ROLE_PATIENT}
	ownDoctor := &messages.Caller{Subject: doctorID, Role: messages.Role_ROLE_DOCTOR}
	otherDoctor := &messages.Caller{Subject: "d-2", Role: messages.Role_ROLE_DOCTOR}
	desk := &messages.Caller{Subject: "desk", Role: messages.Role_ROLE_RECEPTIONIST}
	admin := &messages.Caller{Subject: "admin", Role: messages.Role_ROLE_ADMIN}
	for _, tt := range []struct {
		name string
		d    Decision
		want bool
	}{
		{"patient books for self", BookFor(self, patientID), true},
		{"patient books for another", BookFor(otherPatient, patientID), false},
		{"desk books for anyone", BookFor(desk, patientID), true},
		{"other doctor reads an appointment", ReadAppointment(otherDoctor, patientID, doctorID), false},
		{"own doctor reads it", ReadAppointment(ownDoctor, patientID, doctorID), true},
		{"patient reads own", ReadAppointment(self, patientID, doctorID), true},
		{"desk checks in", CheckIn(desk, doctorID), true},
		{"patient checks in", CheckIn(self, doctorID), false},
		{"other doctor checks in", CheckIn(otherDoctor, doctorID), false},
		{"own doctor completes", Complete(ownDoctor, doctorID), true},
		{"desk completes", Complete(desk, doctorID), false},
		{"admin completes", Complete(admin, doctorID), true},
	} {
		if tt.d.Allowed != tt.want {
			t.Errorf("%s: allowed = %v, want %v", tt.name, tt.d.Allowed, tt.want)
		}
	}
	for c, want := range map[*messages.Caller]AgendaView{self: AgendaDenied, ownDoctor: AgendaFull, otherDoctor: AgendaBusy, desk: AgendaFull, admin: AgendaFull} {
		if v, _ := ReadAgenda(c, doctorID); v != want {
			t.Errorf("ReadAgenda(%s %s) = %v, want %v", c.Role.Name(), c.Subject, v, want)
		}
	}
}
