// Package notify tells patients what happens to their appointments,
// prescriptions and record, over email, SMS and Web Push, reliably.
//
// Three steps, each its own transaction, so that nothing is lost when a
// member dies between them:
//
//  1. The outbox relay queues a notification event in the transaction that
//     consumes the domain event (Project); sweeps find reminders and ending
//     prescriptions by time, under a cursor.
//  2. The notifier decides the messages of each event (Decider: language,
//     channels, opt-outs, quiet hours, templates) and writes them, sealed,
//     to the notifications table in the transaction that consumes the
//     event.
//  3. Dispatchers on every member send what is due, at least once, with
//     retries, backoff and a circuit breaker per channel; a message whose
//     last try failed is dead until an operator retries it.
package notify

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
)

// The events a patient is told about; each names its templates.
const (
	AppointmentBooked      = "appointment-booked"
	AppointmentRescheduled = "appointment-rescheduled"
	AppointmentCancelled   = "appointment-cancelled"
	AppointmentReminder    = "appointment-reminder"
	AppointmentMissed      = "appointment-missed"
	PrescriptionEnding     = "prescription-ending"
	PrescriptionEnded      = "prescription-ended"
	EmergencyAccess        = "emergency-access"
	// AccountMail is the login pages' mail (reset and verification links,
	// a sign-in from a new device): rendered by the identity provider.
	AccountMail = "account-mail"
)

// Events are the events with templates of their own.
var Events = []string{AppointmentBooked, AppointmentRescheduled, AppointmentCancelled, AppointmentReminder,
	AppointmentMissed, PrescriptionEnding, PrescriptionEnded, EmergencyAccess}

// Security reports whether event is a security message: it cannot be
// declined and is not held for quiet hours.
func Security(event string) bool { return event == EmergencyAccess || event == AccountMail }

var (
	appointmentChangedType = string(proto.MessageName(&messages.AppointmentChanged{}))
	emergencyGrantedType   = string(proto.MessageName(&messages.EmergencyAccessGranted{}))
)

// eventData is what an event carries for its templates.
type eventData struct {
	AppointmentID  string    `json:"appointment_id,omitempty"`
	DoctorID       string    `json:"doctor_id,omitempty"`
	Start          time.Time `json:"start,omitzero"`
	End            time.Time `json:"end,omitzero"`
	PreviousStart  time.Time `json:"previous_start,omitzero"`
	By             string    `json:"by,omitempty"` // patient or clinic
	Minutes        int       `json:"minutes,omitempty"`
	PrescriptionID string    `json:"prescription_id,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	AccessID       string    `json:"access_id,omitempty"`
	GrantedAt      time.Time `json:"granted_at,omitzero"`
}

// Project is the relay's projector for notifications: the appointment
// changes a patient is told about and emergency accesses to their record
// become notification events, queued in the relay's transaction.
func Project(ev persistence.OutboxEvent, p *persistence.Projection) error {
	var (
		event, patient, about string
		d                     eventData
	)
	switch ev.EventType {
	case appointmentChangedType:
		var e messages.AppointmentChanged
		if err := proto.Unmarshal(ev.Payload, &e); err != nil {
			return err
		}
		a := e.GetAppointment()
		switch e.GetChange() {
		case messages.AppointmentChange_APPOINTMENT_CHANGE_BOOKED:
			event = AppointmentBooked
		case messages.AppointmentChange_APPOINTMENT_CHANGE_RESCHEDULED:
			event = AppointmentRescheduled
			d.PreviousStart = e.GetPrevious().GetStart().AsTime()
		case messages.AppointmentChange_APPOINTMENT_CHANGE_CANCELLED:
			event = AppointmentCancelled
			d.By = "clinic"
			if e.GetCaller().GetRole() == messages.Role_ROLE_PATIENT {
				d.By = "patient"
			}
		case messages.AppointmentChange_APPOINTMENT_CHANGE_NO_SHOW:
			event = AppointmentMissed
		default:
			return nil
		}
		if a.GetId() == "" || a.GetPatientId() == "" || a.GetStart() == nil {
			return errors.New("appointment event without appointment")
		}
		patient, about = a.PatientId, a.Id
		d.AppointmentID, d.DoctorID, d.Start, d.End = a.Id, a.DoctorId, a.Start.AsTime(), a.GetEnd().AsTime()
	case emergencyGrantedType:
		var e messages.EmergencyAccessGranted
		if err := proto.Unmarshal(ev.Payload, &e); err != nil {
			return err
		}
		if e.GetPatientId() == "" || e.GetAccessId() == "" {
			return errors.New("emergency access event without patient")
		}
		event, patient, about = EmergencyAccess, e.PatientId, e.AccessId
		d.AccessID, d.DoctorID, d.GrantedAt, d.ExpiresAt = e.AccessId, e.DoctorId, e.GetGrantedAt().AsTime(), e.GetExpiresAt().AsTime()
	default:
		return nil
	}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	p.Notices = append(p.Notices, persistence.NotificationEvent{Key: ev.ID, Event: event, PatientID: patient, About: about,
		Data: data, CreatedAt: time.Now().UTC()})
	return nil
}
