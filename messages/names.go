package messages

import "strings"

// The external names of the enums: the strings the HTTP API speaks and the
// database stores. They are part of the public contract, like field numbers.

var sexNames = map[Sex]string{
	Sex_SEX_FEMALE:  "female",
	Sex_SEX_MALE:    "male",
	Sex_SEX_OTHER:   "other",
	Sex_SEX_UNKNOWN: "unknown",
}

var bloodTypeNames = map[BloodType]string{
	BloodType_BLOOD_TYPE_O_NEG:  "O-",
	BloodType_BLOOD_TYPE_O_POS:  "O+",
	BloodType_BLOOD_TYPE_A_NEG:  "A-",
	BloodType_BLOOD_TYPE_A_POS:  "A+",
	BloodType_BLOOD_TYPE_B_NEG:  "B-",
	BloodType_BLOOD_TYPE_B_POS:  "B+",
	BloodType_BLOOD_TYPE_AB_NEG: "AB-",
	BloodType_BLOOD_TYPE_AB_POS: "AB+",
}

var severityNames = map[AllergySeverity]string{
	AllergySeverity_ALLERGY_SEVERITY_MILD:     "mild",
	AllergySeverity_ALLERGY_SEVERITY_MODERATE: "moderate",
	AllergySeverity_ALLERGY_SEVERITY_SEVERE:   "severe",
}

var roleNames = map[Role]string{
	Role_ROLE_PATIENT:      "patient",
	Role_ROLE_DOCTOR:       "doctor",
	Role_ROLE_RECEPTIONIST: "receptionist",
	Role_ROLE_ADMIN:        "admin",
	Role_ROLE_SERVICE:      "service",
}

var outcomeNames = map[AuditOutcome]string{
	AuditOutcome_AUDIT_OUTCOME_SUCCESS: "success",
	AuditOutcome_AUDIT_OUTCOME_DENIED:  "denied",
	AuditOutcome_AUDIT_OUTCOME_FAILED:  "failed",
}

func parse[E comparable](names map[E]string, s string) (E, bool) {
	for e, n := range names {
		if n == s {
			return e, true
		}
	}
	var zero E
	return zero, false
}

// Name is the external name of s; "" when unspecified.
func (s Sex) Name() string { return sexNames[s] }

// ParseSex reads an external name; ok is false for anything else.
func ParseSex(s string) (Sex, bool) { return parse(sexNames, s) }

// Name is the external name of b ("AB+"); "" when unspecified.
func (b BloodType) Name() string { return bloodTypeNames[b] }

// ParseBloodType reads an external name; "" is BLOOD_TYPE_UNSPECIFIED.
func ParseBloodType(s string) (BloodType, bool) {
	if s == "" {
		return BloodType_BLOOD_TYPE_UNSPECIFIED, true
	}
	return parse(bloodTypeNames, s)
}

// Name is the external name of s; "" when unspecified.
func (s AllergySeverity) Name() string { return severityNames[s] }

// ParseAllergySeverity reads an external name.
func ParseAllergySeverity(s string) (AllergySeverity, bool) { return parse(severityNames, s) }

// Name is the external name of r; "" when unspecified.
func (r Role) Name() string { return roleNames[r] }

// ParseRole reads an external name.
func ParseRole(s string) (Role, bool) { return parse(roleNames, s) }

// Name is the external name of o; "" when unspecified.
func (o AuditOutcome) Name() string { return outcomeNames[o] }

// ParseAuditOutcome reads an external name.
func ParseAuditOutcome(s string) (AuditOutcome, bool) { return parse(outcomeNames, s) }

var appointmentStatusNames = map[AppointmentStatus]string{
	AppointmentStatus_APPOINTMENT_STATUS_HELD:       "held",
	AppointmentStatus_APPOINTMENT_STATUS_BOOKED:     "booked",
	AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN: "checked_in",
	AppointmentStatus_APPOINTMENT_STATUS_COMPLETED:  "completed",
	AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW:    "no_show",
	AppointmentStatus_APPOINTMENT_STATUS_CANCELLED:  "cancelled",
	AppointmentStatus_APPOINTMENT_STATUS_RELEASED:   "released",
	AppointmentStatus_APPOINTMENT_STATUS_EXPIRED:    "expired",
}

// Name is the external name of s ("checked_in"); "" when unspecified.
func (s AppointmentStatus) Name() string { return appointmentStatusNames[s] }

// ParseAppointmentStatus reads an external name.
func ParseAppointmentStatus(s string) (AppointmentStatus, bool) {
	return parse(appointmentStatusNames, s)
}

var diagnosisStatusNames = map[DiagnosisStatus]string{
	DiagnosisStatus_DIAGNOSIS_STATUS_ACTIVE:   "active",
	DiagnosisStatus_DIAGNOSIS_STATUS_RESOLVED: "resolved",
}

// Name is the external name of s ("active"); "" when unspecified.
func (s DiagnosisStatus) Name() string { return diagnosisStatusNames[s] }

// ParseDiagnosisStatus reads an external name.
func ParseDiagnosisStatus(s string) (DiagnosisStatus, bool) { return parse(diagnosisStatusNames, s) }

var prescriptionStatusNames = map[PrescriptionStatus]string{
	PrescriptionStatus_PRESCRIPTION_STATUS_ACTIVE:    "active",
	PrescriptionStatus_PRESCRIPTION_STATUS_COMPLETED: "completed",
	PrescriptionStatus_PRESCRIPTION_STATUS_CANCELLED: "cancelled",
	PrescriptionStatus_PRESCRIPTION_STATUS_EXPIRED:   "expired",
}

// Name is the external name of s; "" when unspecified.
func (s PrescriptionStatus) Name() string { return prescriptionStatusNames[s] }

// ParsePrescriptionStatus reads an external name.
func ParsePrescriptionStatus(s string) (PrescriptionStatus, bool) {
	return parse(prescriptionStatusNames, s)
}

// Name is the stored spelling of an audit action: its enum name after
// AUDIT_ACTION_, in lower case with hyphens ("read-access-log"); "" when
// unspecified.
func (a AuditAction) Name() string {
	if a == AuditAction_AUDIT_ACTION_UNSPECIFIED {
		return ""
	}
	return auditActionNames[a]
}

// ParseAuditAction reads a stored spelling.
func ParseAuditAction(s string) (AuditAction, bool) { return parse(auditActionNames, s) }

var auditActionNames = func() map[AuditAction]string {
	m := map[AuditAction]string{}
	for v, n := range AuditAction_name {
		if v != 0 {
			m[AuditAction(v)] = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(n, "AUDIT_ACTION_"), "_", "-"))
		}
	}
	return m
}()
