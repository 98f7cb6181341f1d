package calendar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The booking side of the calendar grain.
//
// The grain decides every booking in memory, one message at a time, and
// never waits: writes go to a group-commit pipeline (one fenced transaction
// per batch, while the next batch gathers; a member's Committer groups the
// batches of many doctors), and the call to the patient's grain runs off
// the actor; both come back through ReenterAfter. A booking is a saga:
//
//	hold (memory only) -> the patient's grain reserves the time or refuses
//	(PATIENT_OVERLAP) -> the booking is written in one go: row, cell
//	claims, BOOKED event, audit event -> reply 201
//	on refusal or failure: drop the hold from memory -> reply the error
//
// One write per booking, and none for a refused one. A hold is made
// durable only by older versions (and tests): such a stored hold is taken
// up again by a replay of its request and confirmed by an update.
//
// Invariant (enforced in place and decide): an appointment in appts that
// holds time is in busy, and no two live entries of busy overlap; every
// appointment id has at most one operation (op) in flight.

// op is a booking, reschedule or status change in flight: the requests
// waiting for its outcome (the first, and replays of the same booking).
type op struct {
	waiters []waiter
	// audited is how many of waiters have their success audit event in
	// the batch that makes the change (auditInBatch).
	audited int
}

type waiter struct {
	sender   *actor.PID
	caller   *messages.Caller
	replayed bool
}

// asyncDone carries the end of work done off the actor back into it.
type asyncDone struct{ err error }

// async runs fn off the actor and cont back in it (ReenterAfter), unless
// the activation dropped its state meanwhile.
func (g *Grain) async(ctx actorcluster.GrainContext, timeout time.Duration, fn func() error, cont func(error)) {
	system := ctx.ActorSystem()
	f := actor.NewFuture(system, timeout+time.Second)
	go func() { system.Root.Send(f.PID(), &asyncDone{err: fn()}) }()
	gen := g.gen
	ctx.ReenterAfter(f, func(res any, err error) {
		if gen != g.gen {
			return
		}
		if d, ok := res.(*asyncDone); ok && err == nil {
			err = d.err
		}
		cont(err)
	})
}

// enqueue adds a change to the next batch; done runs in the actor once the
// batch has committed, with the ids of holds whose id was already taken. A
// failed batch drops the activation instead (see drop).
func (g *Grain) enqueue(ctx actorcluster.GrainContext, add func(*persistence.CalendarBatch), done func(taken map[string]bool)) {
	if g.batch == nil {
		g.batch = &persistence.CalendarBatch{DoctorID: g.id}
	}
	add(g.batch)
	g.dones = append(g.dones, done)
	if !g.writing {
		g.flush(ctx)
	}
}

// batchWritten is the committer's outcome of a grain's batch, which the
// grain sends itself (a Go value: it cannot come over the remoting).
type batchWritten struct {
	gen    int
	dones  []func(taken map[string]bool)
	result persistence.CalendarResult
}

func (g *Grain) ReceiveDefault(ctx actorcluster.GrainContext) {
	if m, ok := ctx.Message().(*batchWritten); ok && m.gen == g.gen {
		g.batchDone(ctx, m.dones, m.result.Taken, m.result.Err)
	}
}

func (g *Grain) flush(ctx actorcluster.GrainContext) {
	g.expireLapsed(g.deps.Now())
	b, dones := g.batch, g.dones
	g.batch, g.dones, g.writing = nil, nil, true
	db, commits, fence, timeout := g.deps.DB, g.deps.Commits, g.fence, g.deps.StoreTimeout
	if commits != nil {
		self, system, gen := ctx.Self(), ctx.ActorSystem(), g.gen
		err := commits.Submit(time.Now().Add(timeout), fence, b, func(r persistence.CalendarResult) {
			system.Root.Send(self, &batchWritten{gen: gen, dones: dones, result: r})
		})
		if err != nil {
			g.batchDone(ctx, dones, nil, err)
		}
		return
	}
	var taken []string
	g.async(ctx, timeout, func() error {
		wctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		taken, err = db.WriteCalendar(persistence.WithAudit(wctx, b.Audit...), fence, b)
		return err
	}, func(err error) { g.batchDone(ctx, dones, taken, err) })
}

// batchDone continues in the actor once a batch's write is done: its
// continuations run, or the activation drops its state.
func (g *Grain) batchDone(ctx actorcluster.GrainContext, dones []func(taken map[string]bool), taken []string, err error) {
	if err != nil {
		g.writing = false
		_ = g.storeError(ctx, "write", err)
		return
	}
	set := make(map[string]bool, len(taken))
	for _, id := range taken {
		set[id] = true
	}
	// writing stays set while the continuations run, so that what they
	// enqueue (the confirms of the holds just written) gathers into one
	// next batch instead of the first of them leaving alone; their
	// replies gather likewise, to be audited in one append.
	g.collecting = true
	for _, d := range dones {
		d(set)
	}
	g.collecting = false
	answers, durable := g.answers, g.durable
	g.answers, g.durable = nil, nil
	g.deps.Audit.AnswerAllAfter(ctx, answers)
	g.answerDurable(ctx, durable)
	g.writing = false
	if g.batch != nil {
		g.flush(ctx)
	}
}

// answerDurable sends replies whose audit events their batch wrote, once
// those are chained: the committer chained them before it answered the
// batch, or else the grain asks the chain to.
func (g *Grain) answerDurable(ctx actorcluster.GrainContext, answers []audit.Answer) {
	if !g.deps.Commits.Chains() {
		g.deps.Audit.ChainThenAnswerAll(ctx, answers, g.deps.Logger)
		return
	}
	for _, a := range answers {
		if a.Sender != nil {
			ctx.Send(a.Sender, a.Reply)
		}
	}
}

// expireLapsed turns holds whose time is up into drops in the next batch;
// a saga still running for one (it outlived its hold) is answered.
func (g *Grain) expireLapsed(now time.Time) {
	for _, b := range g.busy.Expired(now) {
		a, ok := g.appts[b.ID]
		if !ok || a.Status != held {
			g.busy.Remove(b.ID) // a reschedule's tentative hold: nothing stored
			continue
		}
		if o := g.ops[a.Id]; o != nil {
			for _, w := range o.waiters {
				g.deps.Logger.Warn("booking saga outlived its hold", "doctor", g.id, "appointment", a.Id)
				g.system.Root.Send(w.sender, messages.ErrStoreUnavailable("the booking did not finish in time; retry"))
			}
			delete(g.ops, a.Id)
		}
		g.forget(a.Id)
		if g.unwritten[a.Id] {
			delete(g.unwritten, a.Id) // nothing stored
			continue
		}
		if g.batch == nil {
			g.batch = &persistence.CalendarBatch{DoctorID: g.id}
		}
		g.batch.Drops = append(g.batch.Drops, a.Id)
		g.batch.Unclaims = append(g.batch.Unclaims, claimsOf(a.Id, IntervalOf(a))...)
	}
}

func claimsOf(id string, iv Interval) []persistence.Claim {
	var out []persistence.Claim
	for _, c := range Cells(iv) {
		out = append(out, persistence.Claim{Cell: c, AppointmentID: id})
	}
	return out
}

// place keeps a live appointment in memory.
func (g *Grain) place(a *messages.AppointmentRecord, fp []byte) {
	g.appts[a.Id] = a
	if fp != nil {
		g.fps[a.Id] = fp
	}
	g.busy.Add(BusyOf(a))
}

// forget removes an appointment that no longer holds time from memory.
func (g *Grain) forget(id string) {
	delete(g.appts, id)
	delete(g.fps, id)
	g.busy.Remove(id)
}

// event is the audit event of an appointment access.
func (g *Grain) event(c *messages.Caller, action messages.AuditAction, apptID, patientID string, reply proto.Message) *messages.AuditEvent {
	outcome, detail := messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""
	if ge, ok := reply.(*actorcluster.GrainErrorResponse); ok {
		outcome, detail = audit.OutcomeOf(ge), ge.Reason
	}
	return audit.Event(c, action, "appointment", apptID, patientID, outcome, detail, g.deps.Now())
}

// answer audits and replies to one request without blocking the grain.
func (g *Grain) answer(ctx actorcluster.GrainContext, sender *actor.PID, c *messages.Caller, action messages.AuditAction, apptID, patientID string, reply proto.Message) {
	e := g.event(c, action, apptID, patientID, reply)
	if g.collecting {
		g.answers = append(g.answers, audit.Answer{Sender: sender, Reply: reply, Events: []*messages.AuditEvent{e}})
		return
	}
	g.deps.Audit.AnswerAfter(ctx, sender, reply, e)
}

// auditInBatch puts the success audit events of the op on id, for the
// waiters it has now, in batch b: the change and its audit rows commit
// together, so a committed change is answered whatever becomes of the
// audit chain (finish). a is the appointment the change makes.
func (g *Grain) auditInBatch(b *persistence.CalendarBatch, id string, action messages.AuditAction, a *messages.AppointmentRecord, patientID string) {
	o := g.ops[id]
	if o == nil {
		return
	}
	shard := g.deps.Audit.Shard()
	for _, w := range o.waiters[o.audited:] {
		e := g.event(w.caller, action, id, patientID, &messages.AppointmentReply{Appointment: a, Replayed: w.replayed})
		b.Audit = append(b.Audit, persistence.PendingAudit{Shard: shard, Event: e})
	}
	o.audited = len(o.waiters)
}

// finish ends the op on id and answers its waiters: with the appointment,
// or with errReply. Waiters whose success event the change's batch wrote
// are answered once the shard is asked to chain it; the others (refusals,
// replays that joined later) are audited first.
func (g *Grain) finish(ctx actorcluster.GrainContext, id string, action messages.AuditAction, a *messages.AppointmentRecord, errReply *actorcluster.GrainErrorResponse, patientID string) {
	o := g.ops[id]
	delete(g.ops, id)
	if o == nil {
		return
	}
	for i, w := range o.waiters {
		var reply proto.Message = errReply
		if errReply == nil {
			reply = &messages.AppointmentReply{Appointment: a, Replayed: w.replayed}
		}
		if errReply == nil && i < o.audited {
			answer := audit.Answer{Sender: w.sender, Reply: reply}
			if g.collecting {
				g.durable = append(g.durable, answer)
			} else {
				g.answerDurable(ctx, []audit.Answer{answer})
			}
			continue
		}
		g.answer(ctx, w.sender, w.caller, action, id, patientID, reply)
	}
}

// patientTimeout bounds the call to the patient's grain: well inside the
// hold, so that a saga normally ends before its hold could lapse.
func (g *Grain) patientTimeout() time.Duration {
	return min(cluster.DefaultTimeout, g.deps.HoldTTL/3)
}

// reserve asks the patient's grain to take on iv for appointment a.
func (g *Grain) reserve(ctx actorcluster.GrainContext, c *messages.Caller, a *messages.AppointmentRecord, iv Interval, cont func(error)) {
	cl, timeout := ctx.Cluster(), g.patientTimeout()
	req := &messages.ReserveRequest{Caller: c, AppointmentId: a.Id, DoctorId: g.id,
		Start: timestamppb.New(iv.Start), End: timestamppb.New(iv.End),
		PendingUntil: timestamppb.New(g.deps.Now().Add(g.deps.HoldTTL))}
	g.async(ctx, timeout, func() error {
		cctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := cluster.Call(cctx, cl, "Patient", a.PatientId, func() (*messages.ReserveReply, error) {
			return messages.GetPatientGrainClient(cl, a.PatientId).Reserve(req, cluster.CallOptions(timeout)...)
		})
		return err
	}, cont)
}

// settle tells the patient's grain that a reservation changed (fire and
// forget: it re-reads the appointment when it matters).
func (g *Grain) settle(ctx actorcluster.GrainContext, a *messages.AppointmentRecord) {
	cl := ctx.Cluster()
	req := &messages.SettleRequest{AppointmentId: a.Id, Active: Holds(a), Start: a.Start, End: a.End}
	go func() {
		_, _ = messages.GetPatientGrainClient(cl, a.PatientId).Settle(req, cluster.CallOptions(cluster.DefaultTimeout)...)
	}()
}

// patientRefusal is the booking's reply when the patient's grain refused
// or could not be asked.
func patientRefusal(err error) *actorcluster.GrainErrorResponse {
	var ge *actorcluster.GrainErrorResponse
	if errors.As(err, &ge) {
		switch ge.Reason {
		case messages.ErrorReason_PATIENT_OVERLAP.String(), messages.ErrorReason_PERMISSION_DENIED.String(),
			messages.ErrorReason_INVALID_ARGUMENT.String(), messages.ErrorReason_AUDIT_UNAVAILABLE.String():
			return ge
		case messages.ErrorReason_NOT_FOUND.String():
			return messages.ErrInvalidArgument("no such patient").WithMetadata(map[string]string{"field:patient_id": "names no patient"})
		}
	}
	return messages.ErrStoreUnavailable("the patient's record could not be reached; retry")
}

// bookingError maps a refused CheckRequest to its reply.
func bookingError(err error) *actorcluster.GrainErrorResponse {
	switch {
	case errors.Is(err, ErrOffGrid), errors.Is(err, ErrDuration):
		return messages.ErrInvalidArgument("%s", err.Error()).WithMetadata(map[string]string{"field:start": err.Error()})
	case errors.Is(err, ErrSlotTaken):
		return messages.ErrSlotTaken("%s", err.Error())
	default:
		return messages.ErrUnbookable("%s", err.Error())
	}
}

func (g *Grain) Book(req *messages.BookRequest, _ func(*messages.AppointmentReply), _ func(error), ctx actorcluster.GrainContext) error {
	c, id, sender := req.GetCaller(), req.GetAppointmentId(), ctx.Sender()
	refuse := func(reply *actorcluster.GrainErrorResponse) error {
		g.answer(ctx, sender, c, messages.AuditAction_AUDIT_ACTION_CREATE, id, req.GetPatientId(), reply)
		return nil
	}
	if d := access.BookFor(c, req.GetPatientId()); !d.Allowed {
		return refuse(messages.ErrPermissionDenied("%s", d.Reason))
	}
	if ok, err := g.found(ctx); !ok {
		return err
	}
	if !validate.ID(id) {
		return messages.ErrInvalidArgument("appointment id %q is not a UUID", id)
	}
	if !validate.ID(req.GetPatientId()) {
		return refuse(messages.ErrInvalidArgument("patient_id is not a UUID").WithMetadata(map[string]string{"field:patient_id": "must be a UUID"}))
	}
	minutes := req.GetDurationMinutes()
	if minutes == 0 {
		minutes = g.doc.SlotMinutes
	}
	if req.GetStart() == nil {
		return refuse(messages.ErrInvalidArgument("start is required").WithMetadata(map[string]string{"field:start": "required"}))
	}
	if err := CheckReason(req.GetReason()); err != nil {
		return refuse(messages.ErrInvalidArgument("%s", err.Error()).WithMetadata(map[string]string{"field:reason": err.Error()}))
	}
	start := req.GetStart().AsTime()
	iv := Interval{Start: start, End: start.Add(time.Duration(minutes) * time.Minute)}
	fp := BookingFingerprint(req.GetPatientId(), start, minutes, req.GetReason())
	now := g.deps.Now()

	if a, ok := g.appts[id]; ok {
		switch {
		case !bytes.Equal(g.fps[id], fp):
			return refuse(messages.ErrIdempotencyKeyReused("the idempotency key was used for another booking"))
		case g.ops[id] != nil: // the first request is still running (its confirm may not be durable yet): wait for it
			g.ops[id].waiters = append(g.ops[id].waiters, waiter{sender: sender, caller: c, replayed: true})
			return nil
		case a.Status == held && BusyOf(a).Live(now): // orphaned by a restart: take the saga up again
			g.ops[id] = &op{waiters: []waiter{{sender: sender, caller: c, replayed: true}}}
			g.reserve(ctx, c, a, iv, func(err error) { g.reserved(ctx, a, err) })
			return nil
		case a.Status != held:
			g.answer(ctx, sender, c, messages.AuditAction_AUDIT_ACTION_CREATE, id, a.PatientId, &messages.AppointmentReply{Appointment: a, Replayed: true})
			return nil
		}
		// A lapsed hold of this very request: start afresh below.
	}
	if err := CheckRequest(g.hours, iv, now); err != nil {
		return refuse(bookingError(err))
	}
	if _, taken := g.busy.Conflict(iv, now, id); taken {
		return refuse(bookingError(ErrSlotTaken))
	}
	g.expireLapsed(now) // also drops a lapsed hold of this id before its new insert
	a := NewHold(id, g.id, req.GetPatientId(), c.GetSubject(), req.GetReason(), iv, now, g.deps.HoldTTL)
	g.place(a, fp)
	g.ops[id] = &op{waiters: []waiter{{sender: sender, caller: c}}}
	g.unwritten[id] = true
	// The hold is decided, in memory: no other booking can take its time
	// while the patient's grain is asked. Once it accepts, the booking is
	// written in one go (row, claims, BOOKED event and audit event); if it
	// refuses, nothing was written. The database's claims keep the slot
	// safe should another activation decide meanwhile (the fence refuses
	// this one's write), and a patient's reservation whose booking was
	// never written ends by itself (pending_until).
	g.reserve(ctx, c, a, iv, func(err error) {
		if g.appts[id] != a || g.ops[id] == nil {
			return // the hold lapsed meanwhile and was answered
		}
		if err != nil {
			g.release(ctx, a)
			g.settle(ctx, &messages.AppointmentRecord{Id: a.Id, PatientId: a.PatientId})
			g.finish(ctx, id, messages.AuditAction_AUDIT_ACTION_CREATE, nil, patientRefusal(err), a.PatientId)
			return
		}
		confirmed := g.book(a)
		g.enqueue(ctx, func(b *persistence.CalendarBatch) {
			b.Inserts = append(b.Inserts, persistence.NewAppointment{Record: confirmed, Fingerprint: fp, Cells: Cells(iv),
				Event: &messages.AppointmentChanged{Caller: c, Change: messages.AppointmentChange_APPOINTMENT_CHANGE_BOOKED, Appointment: confirmed}})
			g.auditInBatch(b, id, messages.AuditAction_AUDIT_ACTION_CREATE, confirmed, a.PatientId)
		}, func(taken map[string]bool) {
			if g.appts[id] != confirmed {
				return // dropped meanwhile
			}
			if taken[id] {
				// Another request's appointment has this id; it is answered
				// from the store, and the reservation just asked for ends by
				// itself (pending_until) unless that appointment is this one.
				g.forget(id)
				g.replayStored(ctx, id, fp)
				return
			}
			g.finish(ctx, id, messages.AuditAction_AUDIT_ACTION_CREATE, confirmed, nil, a.PatientId)
		})
	})
	return nil
}

// book turns hold a, which was never written, into its booking: memory
// takes it at once, so the time stays held while the write is in flight
// (if the write fails the activation drops its state).
func (g *Grain) book(a *messages.AppointmentRecord) *messages.AppointmentRecord {
	confirmed := Confirm(a, g.deps.Now())
	delete(g.unwritten, a.Id)
	g.place(confirmed, nil)
	if s := g.deps.Stats; s != nil {
		s.WrittenAtOnce.Add(1)
	}
	return confirmed
}

// reserved continues a booking saga once the patient's grain has answered.
func (g *Grain) reserved(ctx actorcluster.GrainContext, a *messages.AppointmentRecord, err error) {
	if g.appts[a.Id] != a || g.ops[a.Id] == nil {
		return // the hold lapsed meanwhile and was answered
	}
	if err != nil {
		g.release(ctx, a)
		g.settle(ctx, &messages.AppointmentRecord{Id: a.Id, PatientId: a.PatientId})
		g.finish(ctx, a.Id, messages.AuditAction_AUDIT_ACTION_CREATE, nil, patientRefusal(err), a.PatientId)
		return
	}
	confirmed := Confirm(a, g.deps.Now())
	if s := g.deps.Stats; s != nil {
		s.HeldThenConfirmed.Add(1)
	}
	// Memory takes the booking now, so that the hold cannot lapse under the
	// confirm in flight; if the write fails the activation drops its state.
	g.place(confirmed, nil)
	event := &messages.AppointmentChanged{Caller: g.ops[a.Id].waiters[0].caller, Change: messages.AppointmentChange_APPOINTMENT_CHANGE_BOOKED, Appointment: confirmed}
	g.enqueue(ctx, func(b *persistence.CalendarBatch) {
		b.Updates = append(b.Updates, persistence.AppointmentUpdate{Record: confirmed, PrevVersion: a.Version})
		b.Events = append(b.Events, event)
		g.auditInBatch(b, a.Id, messages.AuditAction_AUDIT_ACTION_CREATE, confirmed, a.PatientId)
	}, func(map[string]bool) {
		g.finish(ctx, a.Id, messages.AuditAction_AUDIT_ACTION_CREATE, confirmed, nil, a.PatientId)
	})
}

// release ends a hold whose saga failed: memory at once, the database in
// the next batch (until then the stored hold only blocks its own cells).
func (g *Grain) release(ctx actorcluster.GrainContext, a *messages.AppointmentRecord) {
	g.forget(a.Id)
	if g.unwritten[a.Id] {
		delete(g.unwritten, a.Id) // nothing stored
		return
	}
	g.enqueue(ctx, func(b *persistence.CalendarBatch) {
		b.Drops = append(b.Drops, a.Id)
		b.Unclaims = append(b.Unclaims, claimsOf(a.Id, IntervalOf(a))...)
	}, func(map[string]bool) {})
}

// replayStored answers a booking whose id the database already holds but
// memory does not (an old appointment, or another doctor's): the same
// request gets that appointment, a different one an error.
func (g *Grain) replayStored(ctx actorcluster.GrainContext, id string, fp []byte) {
	sctx, cancel := g.storeCtx()
	defer cancel()
	stored, storedFP, err := g.deps.DB.GetAppointment(sctx, id)
	var (
		a     *messages.AppointmentRecord
		reply *actorcluster.GrainErrorResponse
	)
	switch {
	case err != nil:
		reply = messages.ErrStoreUnavailable("calendar store unavailable")
	case stored.DoctorId != g.id || !bytes.Equal(storedFP, fp):
		reply = messages.ErrIdempotencyKeyReused("the idempotency key was used for another booking")
	default:
		a = stored
	}
	o := g.ops[id]
	if o != nil && len(o.waiters) > 0 {
		o.waiters[0].replayed = true
	}
	g.finish(ctx, id, messages.AuditAction_AUDIT_ACTION_CREATE, a, reply, "")
}

// lookup finds an appointment of this doctor: in memory when it holds
// time, else in the database.
func (g *Grain) lookup(id string) (*messages.AppointmentRecord, *actorcluster.GrainErrorResponse) {
	if a, ok := g.appts[id]; ok {
		return a, nil
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	a, _, err := g.deps.DB.GetAppointment(sctx, id)
	switch {
	case errors.Is(err, persistence.ErrNoAppointment):
		return nil, messages.ErrNotFound("no appointment %s", id)
	case err != nil:
		return nil, messages.ErrStoreUnavailable("calendar store unavailable")
	case a.DoctorId != g.id:
		return nil, messages.ErrNotFound("no appointment %s for this doctor", id)
	case a.Status == held:
		return nil, messages.ErrNotFound("appointment %s is not booked", id)
	}
	return a, nil
}

func (g *Grain) Reschedule(req *messages.RescheduleRequest, _ func(*messages.AppointmentReply), _ func(error), ctx actorcluster.GrainContext) error {
	c, id, sender := req.GetCaller(), req.GetAppointmentId(), ctx.Sender()
	if ok, err := g.found(ctx); !ok {
		return err
	}
	a, nf := g.lookup(id)
	if nf != nil {
		return nf
	}
	refuse := func(reply *actorcluster.GrainErrorResponse) error {
		g.answer(ctx, sender, c, messages.AuditAction_AUDIT_ACTION_RESCHEDULE, id, a.PatientId, reply)
		return nil
	}
	if d := access.BookFor(c, a.PatientId); !d.Allowed {
		return refuse(messages.ErrPermissionDenied("%s", d.Reason))
	}
	if g.ops[id] != nil {
		return refuse(messages.ErrWrongState("another change to this appointment is in progress; retry"))
	}
	now := g.deps.Now()
	if err := CanReschedule(a, now); err != nil {
		return refuse(messages.ErrWrongState("%s", err.Error()))
	}
	if req.GetStart() == nil {
		return refuse(messages.ErrInvalidArgument("start is required").WithMetadata(map[string]string{"field:start": "required"}))
	}
	old := IntervalOf(a)
	start := req.GetStart().AsTime()
	iv := Interval{Start: start, End: start.Add(old.End.Sub(old.Start))}
	if err := CheckRequest(g.hours, iv, now); err != nil {
		return refuse(bookingError(err))
	}
	if _, taken := g.busy.Conflict(iv, now, id); taken {
		return refuse(bookingError(ErrSlotTaken))
	}
	// The new time is held in memory while the patient's grain is asked;
	// the old one stays claimed until the move commits in one transaction.
	tentative := id + "#to"
	g.busy.Add(Busy{ID: tentative, Interval: iv, Hold: true, Expires: now.Add(g.deps.HoldTTL)})
	g.ops[id] = &op{waiters: []waiter{{sender: sender, caller: c}}}
	g.reserve(ctx, c, a, iv, func(err error) {
		g.busy.Remove(tentative)
		if err != nil {
			g.settle(ctx, a)
			g.finish(ctx, id, messages.AuditAction_AUDIT_ACTION_RESCHEDULE, nil, patientRefusal(err), a.PatientId)
			return
		}
		if g.appts[id] != a { // cannot happen while the op holds the id; be safe
			g.finish(ctx, id, messages.AuditAction_AUDIT_ACTION_RESCHEDULE, nil, messages.ErrWrongState("the appointment changed meanwhile; retry"), a.PatientId)
			return
		}
		moved := Moved(a, iv, g.deps.Now())
		gained, lost := cellDiff(id, iv, old)
		event := &messages.AppointmentChanged{Caller: c, Change: messages.AppointmentChange_APPOINTMENT_CHANGE_RESCHEDULED,
			Appointment: moved, Previous: &messages.Slot{Start: a.Start, End: a.End}}
		// Memory takes the new time at once (the tentative hold is gone): a
		// booking decided before the move commits must see it, or its claim
		// would collide in the database. A failed write drops the state.
		g.place(moved, nil)
		g.enqueue(ctx, func(b *persistence.CalendarBatch) {
			b.Updates = append(b.Updates, persistence.AppointmentUpdate{Record: moved, PrevVersion: a.Version})
			b.Claims = append(b.Claims, gained...)
			b.Unclaims = append(b.Unclaims, lost...)
			b.Events = append(b.Events, event)
			g.auditInBatch(b, id, messages.AuditAction_AUDIT_ACTION_RESCHEDULE, moved, a.PatientId)
		}, func(map[string]bool) {
			g.settle(ctx, moved)
			g.finish(ctx, id, messages.AuditAction_AUDIT_ACTION_RESCHEDULE, moved, nil, a.PatientId)
		})
	})
	return nil
}

// cellDiff is the claims a move from old to iv gains and loses (cells in
// both stay claimed throughout).
func cellDiff(id string, iv, old Interval) (gained, lost []persistence.Claim) {
	for _, c := range Cells(iv) {
		if !old.Has(c) {
			gained = append(gained, persistence.Claim{Cell: c, AppointmentID: id})
		}
	}
	for _, c := range Cells(old) {
		if !iv.Has(c) {
			lost = append(lost, persistence.Claim{Cell: c, AppointmentID: id})
		}
	}
	return gained, lost
}

// actionNames are the transitions as the audit trail names them (before
// the typed vocabulary, check-in and no-show were stored as check_in and
// no_show).
var actionNames = map[messages.AppointmentAction]messages.AuditAction{
	messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL:   messages.AuditAction_AUDIT_ACTION_CANCEL,
	messages.AppointmentAction_APPOINTMENT_ACTION_CHECK_IN: messages.AuditAction_AUDIT_ACTION_CHECK_IN,
	messages.AppointmentAction_APPOINTMENT_ACTION_COMPLETE: messages.AuditAction_AUDIT_ACTION_COMPLETE,
	messages.AppointmentAction_APPOINTMENT_ACTION_NO_SHOW:  messages.AuditAction_AUDIT_ACTION_NO_SHOW,
}

func transitionAccess(c *messages.Caller, action messages.AppointmentAction, a *messages.AppointmentRecord) access.Decision {
	switch action {
	case messages.AppointmentAction_APPOINTMENT_ACTION_CANCEL:
		return access.BookFor(c, a.PatientId)
	case messages.AppointmentAction_APPOINTMENT_ACTION_COMPLETE:
		return access.Complete(c, a.DoctorId)
	default:
		return access.CheckIn(c, a.DoctorId)
	}
}

func (g *Grain) Transition(req *messages.TransitionRequest, _ func(*messages.AppointmentReply), _ func(error), ctx actorcluster.GrainContext) error {
	c, id, sender, action := req.GetCaller(), req.GetAppointmentId(), ctx.Sender(), req.GetAction()
	name, ok := actionNames[action]
	if !ok {
		return messages.ErrInvalidArgument("unknown action %v", action)
	}
	if ok, err := g.found(ctx); !ok {
		return err
	}
	a, nf := g.lookup(id)
	if nf != nil {
		return nf
	}
	refuse := func(reply *actorcluster.GrainErrorResponse) error {
		g.answer(ctx, sender, c, name, id, a.PatientId, reply)
		return nil
	}
	if d := transitionAccess(c, action, a); !d.Allowed {
		return refuse(messages.ErrPermissionDenied("%s", d.Reason))
	}
	if g.ops[id] != nil {
		return refuse(messages.ErrWrongState("another change to this appointment is in progress; retry"))
	}
	n, change, err := Transition(a, Move{Action: action, Now: g.deps.Now(), By: c.GetSubject(), CheckInOpens: g.deps.CheckInOpens})
	if err != nil {
		return refuse(messages.ErrWrongState("%s", err.Error()))
	}
	g.ops[id] = &op{waiters: []waiter{{sender: sender, caller: c}}}
	event := &messages.AppointmentChanged{Caller: c, Change: change, Appointment: n}
	g.enqueue(ctx, func(b *persistence.CalendarBatch) {
		b.Updates = append(b.Updates, persistence.AppointmentUpdate{Record: n, PrevVersion: a.Version})
		if n.Status == cancelled {
			b.Unclaims = append(b.Unclaims, claimsOf(id, IntervalOf(a))...)
		}
		b.Events = append(b.Events, event)
		g.auditInBatch(b, id, name, n, a.PatientId)
	}, func(map[string]bool) {
		if Holds(n) && g.deps.Now().Before(n.End.AsTime()) {
			g.place(n, nil)
		} else {
			g.forget(id)
		}
		// Every change reaches the patient's grain: a cancellation frees
		// the time, and any change may end (or begin) what lets the doctor
		// read the record (its cached access decisions follow).
		g.settle(ctx, n)
		g.finish(ctx, id, name, n, nil, a.PatientId)
	})
	return nil
}

func (g *Grain) GetAppointment(req *messages.GetAppointmentRequest, ctx actorcluster.GrainContext) (*messages.AppointmentReply, error) {
	c := req.GetCaller()
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	a, nf := g.lookup(req.GetAppointmentId())
	if nf != nil {
		return nil, nf
	}
	var reply proto.Message = &messages.AppointmentReply{Appointment: a}
	if d := access.ReadAppointment(c, a.PatientId, a.DoctorId); !d.Allowed {
		reply = messages.ErrPermissionDenied("%s", d.Reason)
	}
	if err := g.deps.Audit.Access(g.event(c, messages.AuditAction_AUDIT_ACTION_READ, a.Id, a.PatientId, reply)); err != nil {
		return nil, err
	}
	if ge, ok := reply.(*actorcluster.GrainErrorResponse); ok {
		return nil, ge
	}
	return reply.(*messages.AppointmentReply), nil
}

// MaxAgendaWindow and MaxAgendaEntries bound one agenda read.
const (
	MaxAgendaWindow  = 31 * 24 * time.Hour
	MaxAgendaEntries = 2000
)

func (g *Grain) Agenda(req *messages.AgendaRequest, ctx actorcluster.GrainContext) (*messages.AgendaReply, error) {
	c := req.GetCaller()
	view, d := access.ReadAgenda(c, g.id)
	if !d.Allowed {
		if err := g.record(ctx, c, messages.AuditAction_AUDIT_ACTION_READ, "agenda", messages.AuditOutcome_AUDIT_OUTCOME_DENIED, d.Reason); err != nil {
			return nil, err
		}
		return nil, messages.ErrPermissionDenied("%s", d.Reason)
	}
	if ok, err := g.found(ctx); !ok {
		return nil, err
	}
	from, to := req.GetFrom().AsTime(), req.GetTo().AsTime()
	if req.GetFrom() == nil || req.GetTo() == nil || !from.Before(to) || to.Sub(from) > MaxAgendaWindow {
		return nil, messages.ErrInvalidArgument("from must be before to, at most 31 days apart").
			WithMetadata(map[string]string{"field:to": "must be after from and at most 31 days later"})
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	appts, err := g.deps.DB.DoctorAgenda(sctx, g.id, from, to, MaxAgendaEntries)
	if err != nil {
		return nil, messages.ErrStoreUnavailable("calendar store unavailable")
	}
	reply := &messages.AgendaReply{Appointments: appts, Redacted: view == access.AgendaBusy}
	if reply.Redacted {
		for _, a := range appts {
			a.PatientId, a.Reason, a.BookedBy = "", "", ""
		}
		return reply, nil
	}
	// A full agenda shows each patient's appointment: each patient's trail
	// records the read.
	events := make([]*messages.AuditEvent, 0, len(appts)+1)
	events = append(events, audit.Event(c, messages.AuditAction_AUDIT_ACTION_READ, "agenda", g.id, "", messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, fmt.Sprintf("%d appointments", len(appts)), g.deps.Now()))
	for _, a := range appts {
		events = append(events, audit.Event(c, messages.AuditAction_AUDIT_ACTION_READ, "appointment", a.Id, a.PatientId, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "agenda", g.deps.Now()))
	}
	actx, cancel := context.WithTimeout(context.Background(), cluster.DefaultTimeout)
	defer cancel()
	if err := g.deps.Audit.Record(actx, events...); err != nil {
		return nil, messages.ErrAuditUnavailable("the access could not be audited")
	}
	return reply, nil
}
