package cluster

import (
	"testing"
	"time"
)

// TestADepartedMemberShowsDown: a member that leaves the topology stays in
// the view as down, named by its last id, until a member is on its
// address again (a restart: up under a new id) or departedFor has passed.
func TestADepartedMemberShowsDown(t *testing.T) {
	var d departures
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	a := MemberView{ID: "a1", Address: "10.0.0.1:4000", Status: "up"}
	b := MemberView{ID: "b1", Address: "10.0.0.2:4000", Status: "up"}
	if got := d.merge([]MemberView{a, b}, t0); len(got) != 2 {
		t.Fatalf("both up: %+v", got)
	}
	got := d.merge([]MemberView{a}, t0.Add(5*time.Second))
	if len(got) != 2 || got[1].ID != "b1" || got[1].Status != "down" || !got[1].LastSeen.Equal(t0) {
		t.Fatalf("b gone: %+v", got)
	}
	b2 := MemberView{ID: "b2", Address: b.Address, Status: "up"}
	got = d.merge([]MemberView{a, b2}, t0.Add(10*time.Second))
	if len(got) != 2 || got[1].ID != "b2" || got[1].Status != "up" {
		t.Fatalf("b back under a new id: %+v", got)
	}
	d.merge([]MemberView{a}, t0.Add(11*time.Second))
	if got = d.merge([]MemberView{a}, t0.Add(11*time.Second+departedFor+time.Second)); len(got) != 1 {
		t.Fatalf("long gone: %+v", got)
	}
}
