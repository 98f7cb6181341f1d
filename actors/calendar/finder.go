package calendar

import (
	"container/heap"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"google.golang.org/protobuf/proto"
)

// The slot finder answers "the earliest free slots of any doctor with this
// specialty (at this clinic)" from a read model, not by asking every
// calendar grain: Project turns the calendars' domain events into that read
// model (the outbox relay calls it), and Finder queries it. It trails the
// grains by the relay's lag and knows nothing of holds, so a slot it lists
// may be gone by the time it is booked; the booking then answers slot-taken.

var (
	doctorChangedType      = string(proto.MessageName(&messages.DoctorChanged{}))
	appointmentChangedType = string(proto.MessageName(&messages.AppointmentChanged{}))
)

// Project is the slot finder's persistence.Projector: a doctor's profile
// and hours from DoctorChanged, an appointment's time from
// AppointmentChanged. Other events change nothing here.
func Project(ev persistence.OutboxEvent, p *persistence.Projection) error {
	switch ev.EventType {
	case doctorChangedType:
		var e messages.DoctorChanged
		if err := proto.Unmarshal(ev.Payload, &e); err != nil {
			return err
		}
		d := e.GetDoctor()
		if d.GetId() == "" || e.GetAvailability() == nil {
			return errors.New("doctor event without doctor or hours")
		}
		p.Doctors = append(p.Doctors, persistence.DoctorView{
			DoctorID: d.Id, Specialty: d.Specialty, ClinicID: d.ClinicId, TimeZone: d.TimeZone,
			SlotMinutes: d.SlotMinutes, Availability: e.GetAvailability(), Version: d.Version,
		})
	case appointmentChangedType:
		var e messages.AppointmentChanged
		if err := proto.Unmarshal(ev.Payload, &e); err != nil {
			return err
		}
		a := e.GetAppointment()
		if a.GetId() == "" || a.GetStart() == nil || a.GetEnd() == nil {
			return errors.New("appointment event without appointment")
		}
		p.Busy = append(p.Busy, persistence.BusyView{
			AppointmentID: a.Id, DoctorID: a.DoctorId, Start: a.Start.AsTime(), End: a.End.AsTime(),
			Occupied: Holds(a), Version: a.Version,
		})
	}
	return nil
}

// FinderStore is the read model the Finder queries (persistence.DB).
type FinderStore interface {
	FinderDoctors(ctx context.Context, specialty, clinic string, known func(id string, version int64) bool) ([]persistence.DoctorView, error)
	FinderBusy(ctx context.Context, doctors []string, from, to time.Time) ([]persistence.BusyView, error)
}

// Finder limits.
const (
	DefaultFinderLimit = 50
	MaxFinderLimit     = 500
	MaxSpecialtyLength = 100
)

// SlotQuery is one search: slots that start in [From, To), of doctors with
// Specialty at Clinic ("" for any), at most Limit, after Cursor (a
// FoundSlot.Cursor of the previous page, or "").
type SlotQuery struct {
	Specialty, Clinic string
	From, To          time.Time
	Limit             int
	Cursor            string
}

// FoundSlot is a free slot of one doctor.
type FoundSlot struct {
	DoctorID, ClinicID, Specialty string
	Interval
}

// Cursor is the position just after s, for the next page.
func (s FoundSlot) Cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(s.Start.UnixNano(), 10) + "/" + s.DoctorID))
}

// after reports whether s comes after the position (start, doctor).
func (s FoundSlot) after(start time.Time, doctor string) bool {
	return s.Start.After(start) || (s.Start.Equal(start) && s.DoctorID > doctor)
}

func parseCursor(c string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", err
	}
	ns, doctor, ok := strings.Cut(string(raw), "/")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || doctor == "" {
		return time.Time{}, "", errors.New("malformed cursor")
	}
	return time.Unix(0, n).UTC(), doctor, nil
}

// Finder answers slot searches from the read model. It keeps each
// doctor's parsed hours by version, so a search decodes only what changed.
type Finder struct {
	Store FinderStore
	Now   func() time.Time // nil: time.Now

	mu    sync.Mutex
	hours map[string]parsedHours // doctor id ->
}

type parsedHours struct {
	version int64
	hours   *Availability // nil: the projected hours do not parse
}

// Find returns the earliest free slots matching q in (start, doctor id)
// order, and whether there are more. Errors are grain-style replies
// (messages.Err*), so the edge maps them like a grain's.
func (f *Finder) Find(ctx context.Context, c *messages.Caller, q SlotQuery) ([]FoundSlot, bool, error) {
	if d := access.ReadDirectory(c); !d.Allowed {
		return nil, false, messages.ErrPermissionDenied("%s", d.Reason)
	}
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	if err := q.check(); err != nil {
		return nil, false, err
	}
	var afterStart time.Time
	var afterDoctor string
	from := q.From
	if q.Cursor != "" {
		var err error
		if afterStart, afterDoctor, err = parseCursor(q.Cursor); err != nil {
			return nil, false, messages.ErrInvalidArgument("bad cursor").
				WithMetadata(map[string]string{"field:cursor": "is not a cursor this API returned"})
		}
		from = later(from, afterStart)
	}
	from = later(from, now.Truncate(time.Minute))
	if !from.Before(q.To) {
		return nil, false, nil
	}
	views, err := f.Store.FinderDoctors(ctx, q.Specialty, q.Clinic, f.known)
	if err != nil {
		return nil, false, messages.ErrStoreUnavailable("slot finder unavailable")
	}
	doctors, ids := f.finderDoctors(views)
	// Search day by day, then over doubling spans: slots found in one span
	// all start before those of the next, so the first spans that yield
	// Limit+1 slots decide the answer; usually the first day does.
	var out []FoundSlot
	for start, span := from, 24*time.Hour; start.Before(q.To) && len(out) <= q.Limit; span *= 2 {
		end := q.To
		if span < q.To.Sub(start) {
			end = start.Add(span)
		}
		busy, err := f.Store.FinderBusy(ctx, ids, start.Add(-MaxBookingMinute*time.Minute), end)
		if err != nil {
			return nil, false, messages.ErrStoreUnavailable("slot finder unavailable")
		}
		out = append(out, freeIn(doctors, busy, start, end, now, afterStart, afterDoctor, q.Limit+1-len(out))...)
		start = end
	}
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

func (q *SlotQuery) check() error {
	fields := map[string]string{}
	if q.Limit == 0 {
		q.Limit = DefaultFinderLimit
	}
	if q.Limit < 1 || q.Limit > MaxFinderLimit {
		fields["field:limit"] = fmt.Sprintf("must be 1 to %d", MaxFinderLimit)
	}
	if len(q.Specialty) > MaxSpecialtyLength {
		fields["field:specialty"] = fmt.Sprintf("must be at most %d characters", MaxSpecialtyLength)
	}
	if !q.From.Before(q.To) || q.To.Sub(q.From) > MaxSlotsWindow {
		fields["field:to"] = "must be after from and at most 31 days later"
	}
	if len(fields) > 0 {
		return messages.ErrInvalidArgument("the slot search is not valid").WithMetadata(fields)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// finderDoctor is a projected doctor with parsed hours.
type finderDoctor struct {
	view  persistence.DoctorView
	hours *Availability
}

// known reports whether the doctor's hours at this version are parsed.
func (f *Finder) known(id string, version int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.hours[id]
	return ok && h.version == version
}

// finderDoctors pairs each doctor with their parsed hours, parsing what the
// store decoded. A doctor whose projected hours no longer parse (a zone this
// binary does not know) offers no slots rather than failing every search.
func (f *Finder) finderDoctors(views []persistence.DoctorView) ([]finderDoctor, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hours == nil {
		f.hours = map[string]parsedHours{}
	}
	out := make([]finderDoctor, 0, len(views))
	ids := make([]string, 0, len(views))
	for _, v := range views {
		h, ok := f.hours[v.DoctorID]
		switch {
		case v.Availability != nil:
			h = parsedHours{version: v.Version}
			if zone, err := loadZone(v.TimeZone); err == nil {
				h.hours, _ = ParseAvailability(v.Availability, zone, int(v.SlotMinutes))
			}
			f.hours[v.DoctorID] = h
		case !ok || h.version != v.Version:
			continue // a concurrent search cached a newer version meanwhile; rare
		}
		if h.hours == nil {
			continue
		}
		out = append(out, finderDoctor{view: v, hours: h.hours})
		ids = append(ids, v.DoctorID)
	}
	return out, ids
}

// zones caches loaded time zones: time.LoadLocation reads the zone file
// on every call, and a search parses every matching doctor's hours.
var zones sync.Map // name -> *time.Location

func loadZone(name string) (*time.Location, error) {
	if z, ok := zones.Load(name); ok {
		return z.(*time.Location), nil
	}
	z, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, z)
	return z, nil
}

// freeIn is every doctor's free slots that start in [from, to), after the
// cursor position, in (start, doctor) order, at most limit.
func freeIn(doctors []finderDoctor, busy []persistence.BusyView, from, to, now, afterStart time.Time, afterDoctor string, limit int) []FoundSlot {
	byDoctor := map[string]*Schedule{}
	for _, b := range busy {
		s := byDoctor[b.DoctorID]
		if s == nil {
			s = &Schedule{}
			byDoctor[b.DoctorID] = s
		}
		s.Add(Busy{ID: b.AppointmentID, Interval: Interval{b.Start, b.End}})
	}
	lists := make([][]FoundSlot, 0, len(doctors))
	for _, d := range doctors {
		s := byDoctor[d.view.DoctorID]
		if s == nil {
			s = &Schedule{}
		}
		var list []FoundSlot
		for _, iv := range FreeSlots(d.hours, s, from, to, now) {
			fs := FoundSlot{DoctorID: d.view.DoctorID, ClinicID: d.view.ClinicID, Specialty: d.view.Specialty, Interval: iv}
			if afterDoctor != "" && !fs.after(afterStart, afterDoctor) {
				continue
			}
			// A doctor's slots come in time order: past limit of them, the rest cannot make the page.
			if list = append(list, fs); len(list) == limit {
				break
			}
		}
		if len(list) > 0 {
			lists = append(lists, list)
		}
	}
	return mergeFound(lists, limit)
}

// mergeFound merges lists, each in (start, doctor) order, into the first
// limit of them all, in that order: a heap of the lists' heads, so a page
// costs limit steps whatever the number of doctors.
func mergeFound(lists [][]FoundSlot, limit int) []FoundSlot {
	h := &foundHeap{lists: lists}
	for i := range lists {
		h.heads = append(h.heads, foundHead{list: i})
	}
	heap.Init(h)
	var out []FoundSlot
	for len(out) < limit && h.Len() > 0 {
		top := &h.heads[0]
		out = append(out, lists[top.list][top.pos])
		if top.pos++; top.pos < len(lists[top.list]) {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return out
}

type foundHead struct{ list, pos int }

type foundHeap struct {
	lists [][]FoundSlot
	heads []foundHead
}

func (h *foundHeap) Len() int { return len(h.heads) }
func (h *foundHeap) Less(i, j int) bool {
	a, b := h.lists[h.heads[i].list][h.heads[i].pos], h.lists[h.heads[j].list][h.heads[j].pos]
	return a.Start.Before(b.Start) || (a.Start.Equal(b.Start) && a.DoctorID < b.DoctorID)
}
func (h *foundHeap) Swap(i, j int) { h.heads[i], h.heads[j] = h.heads[j], h.heads[i] }
func (h *foundHeap) Push(x any)    { h.heads = append(h.heads, x.(foundHead)) }
func (h *foundHeap) Pop() any {
	last := h.heads[len(h.heads)-1]
	h.heads = h.heads[:len(h.heads)-1]
	return last
}
