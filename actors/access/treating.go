package access

import "time"

// Treating remembers, per doctor, until when a doctor's relationship with
// one patient lets them read the record (persistence.DoctorTreats), so a
// grain asks the database once per doctor and activation. Only grants are
// kept, each only until it lapses; whatever may end one early (a
// cancellation, a reschedule, a no-show, a care-team removal) must call
// Forget or ForgetAll before the next decision.
type Treating struct {
	until map[string]time.Time
}

// Known reports whether doctor is known to treat the patient at now.
func (t *Treating) Known(doctor string, now time.Time) bool {
	u, ok := t.until[doctor]
	return ok && now.Before(u)
}

// Remember keeps a grant that lasts until until (a zero or past until is
// no grant, and is not kept).
func (t *Treating) Remember(doctor string, until, now time.Time) {
	if !now.Before(until) {
		delete(t.until, doctor)
		return
	}
	if t.until == nil {
		t.until = map[string]time.Time{}
	}
	t.until[doctor] = until
}

// Forget drops what is known about one doctor.
func (t *Treating) Forget(doctor string) { delete(t.until, doctor) }

// ForgetAll drops every grant: one of the patient's appointments changed.
func (t *Treating) ForgetAll() { t.until = nil }
