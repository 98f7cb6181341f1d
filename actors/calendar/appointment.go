package calendar

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/caregrid/caregrid/messages"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultHoldTTL is how long a booking hold keeps its time while the saga
// runs. A saga takes milliseconds; the hold outlives a stalled one only
// this long, also across restarts (the expiry is stored with the hold).
const DefaultHoldTTL = 30 * time.Second

// MaxReasonLength bounds the free-text reason of an appointment.
const MaxReasonLength = 500

// Status names, short.
const (
	held      = messages.AppointmentStatus_APPOINTMENT_STATUS_HELD
	booked    = messages.AppointmentStatus_APPOINTMENT_STATUS_BOOKED
	checkedIn = messages.AppointmentStatus_APPOINTMENT_STATUS_CHECKED_IN
	completed = messages.AppointmentStatus_APPOINTMENT_STATUS_COMPLETED
	noShow    = messages.AppointmentStatus_APPOINTMENT_STATUS_NO_SHOW
	cancelled = messages.AppointmentStatus_APPOINTMENT_STATUS_CANCELLED
)

// ErrWrongState is returned when an appointment's status does not allow
// the action; the message says why.
type ErrWrongState struct{ msg string }

func (e ErrWrongState) Error() string { return e.msg }

func wrongState(format string, args ...any) error {
	return ErrWrongState{msg: fmt.Sprintf(format, args...)}
}

// BookingFingerprint identifies a booking request, so that a replay of the
// same idempotency key with a different request is told apart.
func BookingFingerprint(patientID string, start time.Time, minutes int32, reason string) []byte {
	h := sha256.New()
	h.Write([]byte(patientID))
	h.Write([]byte{0})
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(start.UnixNano()))
	binary.BigEndian.PutUint32(b[8:], uint32(minutes))
	h.Write(b[:])
	h.Write([]byte(reason))
	return h.Sum(nil)
}

// CheckReason checks an appointment's free-text reason.
func CheckReason(reason string) error {
	if !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReasonLength {
		return fmt.Errorf("reason: at most %d characters of text", MaxReasonLength) // text
	}
	return nil
}

// NewHold is the appointment a booking saga starts with: held until
// now+ttl, version 1.
func NewHold(id, doctorID, patientID, bookedBy, reason string, iv Interval, now time.Time, ttl time.Duration) *messages.AppointmentRecord {
	at := timestamppb.New(now.UTC().Truncate(time.Microsecond))
	return &messages.AppointmentRecord{
		Id: id, DoctorId: doctorID, PatientId: patientID,
		Start: timestamppb.New(iv.Start), End: timestamppb.New(iv.End),
		Status: held, HoldExpiresAt: timestamppb.New(now.Add(ttl).UTC().Truncate(time.Microsecond)),
		Reason: reason, BookedBy: bookedBy, Version: 1, CreatedAt: at, UpdatedAt: at,
	}
}

// IntervalOf is the time an appointment occupies.
func IntervalOf(a *messages.AppointmentRecord) Interval {
	return Interval{Start: a.GetStart().AsTime(), End: a.GetEnd().AsTime()}
}

// BusyOf is the schedule entry of a live appointment.
func BusyOf(a *messages.AppointmentRecord) Busy {
	b := Busy{ID: a.Id, Interval: IntervalOf(a)}
	if a.Status == held {
		b.Hold, b.Expires = true, a.GetHoldExpiresAt().AsTime()
	}
	return b
}

// Holds reports whether a's status keeps its time from others.
func Holds(a *messages.AppointmentRecord) bool {
	return a.Status == held || a.Status == booked || a.Status == checkedIn
}

func next(a *messages.AppointmentRecord, now time.Time) *messages.AppointmentRecord {
	n := proto.Clone(a).(*messages.AppointmentRecord)
	n.Version++
	n.UpdatedAt = timestamppb.New(now.UTC().Truncate(time.Microsecond))
	return n
}

// Confirm turns a hold into a booking.
func Confirm(a *messages.AppointmentRecord, now time.Time) *messages.AppointmentRecord {
	n := next(a, now)
	n.Status, n.HoldExpiresAt = booked, nil
	return n
}

// Moved is a booked appointment at its new time.
func Moved(a *messages.AppointmentRecord, iv Interval, now time.Time) *messages.AppointmentRecord {
	n := next(a, now)
	n.Start, n.End = timestamppb.New(iv.Start), timestamppb.New(iv.End)
	return n
}

// CanReschedule says whether a can move to another time at now.
func CanReschedule(a *messages.AppointmentRecord, now time.Time) error {
	if a.Status != booked {
		return wrongState("only a booked appointment can be rescheduled; this one is %s", a.Status.Name())
	}
	if !now.Before(a.GetStart().AsTime()) {
		return wrongState("the appointment has started; it can no longer be rescheduled")
	}
	return nil
}

// DefaultCheckInOpens is how long before its start an appointment can be
// checked in.
const DefaultCheckInOpens = time.Hour

// Move is one change of an appointment's state: what, when, by whom, and
// how early check-in opens.
type Move struct {
	Action       messages.AppointmentAction
	Now          time.Time
	By           string        // the subject making the change
	CheckInOpens time.Duration // 0: DefaultCheckInOpens
}

// Transition applies a move to a: the new state and the event's change,
// or ErrWrongState.
//
//	cancel:   booked, before the start
//	check-in: booked, from CheckInOpens before the start to the end
//	complete: checked in
//	no-show:  booked, from the start on
//
// A check-in records who made it (checked_in_by): a check-in by the desk
// is one of the things that let a doctor read the patient's record.
func Transition(a *messages.AppointmentRecord, m Move) (*messages.AppointmentRecord, messages.AppointmentChange, error) {
	action, now := m.Action, m.Now
	opens := m.CheckInOpens
	if opens <= 0 {
		opens = DefaultCheckInOpens
	}
	start, end := a.GetStart().AsTime(), a.GetEnd().AsTime()
	var (
		to     messages.AppointmentStatus
		change messages.AppointmentChange
	)
	switch action {
	case messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL:
		if a.Status != booked {
			return nil, 0, wrongState("only a booked appointment can be cancelled; this one is %s", a.Status.Name())
		}
		if !now.Before(start) {
			return nil, 0, wrongState("the appointment has started; record a no-show or complete it instead")
		}
		to, change = cancelled, messages.AppointmentChange_APPOINTMENT_CHANGE_CANCELLED
	case messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN:
		if a.Status != booked {
			return nil, 0, wrongState("only a booked appointment can be checked in; this one is %s", a.Status.Name())
		}
		if !now.Before(end) {
			return nil, 0, wrongState("the appointment is over")
		}
		if now.Before(start.Add(-opens)) {
			return nil, 0, wrongState("check-in opens %d minutes before the start", int(opens/time.Minute))
		}
		to, change = checkedIn, messages.AppointmentChange_APPOINTMENT_CHANGE_CHECKED_IN
	case messages.AppointmentAction_APPOINTMENT_ACTION_COMPLETE:
		if a.Status != checkedIn {
			return nil, 0, wrongState("only a checked-in appointment can be completed; this one is %s", a.Status.Name())
		}
		to, change = completed, messages.AppointmentChange_APPOINTMENT_CHANGE_COMPLETED
	case messages.AppointmentAction_APPOINTMENT_ACTION_NO_SHOW:
		if a.Status != booked {
			return nil, 0, wrongState("only a booked appointment can be a no-show; this one is %s", a.Status.Name())
		}
		if now.Before(start) {
			return nil, 0, wrongState("the appointment has not started yet")
		}
		to, change = noShow, messages.AppointmentChange_APPOINTMENT_CHANGE_NO_SHOW
	default:
		return nil, 0, errors.New("unknown action")
	}
	n := next(a, now)
	n.Status = to
	if to == checkedIn {
		n.CheckedInBy = m.By
	}
	return n, change, nil
}
