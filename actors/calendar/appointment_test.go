package calendar

import (
	"errors"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
)

func TestTransitionRules(t *testing.T) {
	start := utc("2026-11-24T08:00:00Z")
	iv := Interval{start, start.Add(30 * time.Minute)}
	before, during, after := start.Add(-time.Hour), start.Add(10*time.Minute), start.Add(time.Hour)
	a := Confirm(NewHold("a", "d", "p", "desk", "", iv, before.Add(-time.Hour), time.Minute), before)
	checked, _, err := Transition(a, Move{Action: messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN, Now: during, By: "desk-2"})
	if err != nil || checked.Status != checkedIn || checked.Version != a.Version+1 || checked.CheckedInBy != "desk-2" {
		t.Fatalf("check-in during = %v, %v", checked, err)
	}
	tests := []struct {
		name   string
		from   *messages.AppointmentRecord
		action messages.AppointmentAction
		now    time.Time
		want   messages.AppointmentStatus // 0: refused
	}{
		{"cancel before the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL, before, cancelled},
		{"cancel after the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL, during, 0},
		{"check in after the end", a, messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN, after, 0},
		{"check in an hour before the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN, start.Add(-time.Hour), checkedIn},
		{"check in 61 minutes before the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN, start.Add(-61 * time.Minute), 0},
		{"check in 20 hours before the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN, start.Add(-20 * time.Hour), 0},
		{"complete a booked one", a, messages.AppointmentAction_APPOINTMENT_ACTION_COMPLETE, during, 0},
		{"complete a checked-in one", checked, messages.AppointmentAction_APPOINTMENT_ACTION_COMPLETE, after, completed},
		{"no-show before the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_NO_SHOW, before, 0},
		{"no-show from the start", a, messages.AppointmentAction_APPOINTMENT_ACTION_NO_SHOW, start, noShow},
		{"no-show after check-in", checked, messages.AppointmentAction_APPOINTMENT_ACTION_NO_SHOW, after, 0},
		{"cancel a checked-in one", checked, messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL, before, 0},
	}
	for _, tt := range tests {
		n, _, err := Transition(tt.from, Move{Action: tt.action, Now: tt.now})
		var ws ErrWrongState
		switch {
		case tt.want == 0 && !errors.As(err, &ws):
			t.Errorf("%s: = %v, %v; want a wrong-state refusal", tt.name, n, err)
		case tt.want != 0 && (err != nil || n.Status != tt.want):
			t.Errorf("%s: = %v, %v; want %v", tt.name, n, err, tt.want)
		}
	}
	if err := CanReschedule(a, during); err == nil {
		t.Error("a started appointment can be rescheduled")
	}
	if err := CanReschedule(checked, before); err == nil {
		t.Error("a checked-in appointment can be rescheduled")
	}
}

func TestBookingFingerprintTellsRequestsApart(t *testing.T) {
	s := utc("2026-11-24T08:00:00Z")
	base := BookingFingerprint("p", s, 15, "x")
	for name, fp := range map[string][]byte{
		"patient": BookingFingerprint("q", s, 15, "x"), "start": BookingFingerprint("p", s.Add(5*time.Minute), 15, "x"),
		"length": BookingFingerprint("p", s, 30, "x"), "reason": BookingFingerprint("p", s, 15, "y"),
	} {
		if string(fp) == string(base) {
			t.Errorf("a different %s gives the same fingerprint", name)
		}
	}
	if string(BookingFingerprint("p", s, 15, "x")) != string(base) {
		t.Error("the same request gives another fingerprint")
	}
}
