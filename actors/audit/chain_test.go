package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/persistence"
)

func chain(n int) []persistence.AuditRow {
	var (
		rows []persistence.AuditRow
		prev = []byte{}
	)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for i := 1; i <= n; i++ {
		r := persistence.AuditRow{Shard: 3, Seq: int64(i), OccurredAt: t0.Add(time.Duration(i) * time.Second),
			Subject: "d1", Role: "doctor", Action: "read", ResourceType: "patient", ResourceID: "p1", PatientID: "p1",
			Outcome: "success", PrevHash: prev}
		r.Hash = Hash(prev, &r)
		prev = r.Hash
		rows = append(rows, r)
	}
	return rows
}

func verify(rows []persistence.AuditRow) error {
	v := &Verifier{Shard: 3}
	for _, r := range rows {
		if err := v.Next(r); err != nil {
			return err
		}
	}
	return nil
}

func TestVerifierAcceptsAnIntactChain(t *testing.T) {
	if err := verify(chain(5)); err != nil {
		t.Fatalf("verify(intact) = %v", err)
	}
}

func TestVerifierFindsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func([]persistence.AuditRow) []persistence.AuditRow
		want   string
	}{
		{"changed subject", func(r []persistence.AuditRow) []persistence.AuditRow { r[2].Subject = "d2"; return r }, "seq 3: hash"},
		{"changed time", func(r []persistence.AuditRow) []persistence.AuditRow {
			r[1].OccurredAt = r[1].OccurredAt.Add(time.Microsecond)
			return r
		}, "seq 2: hash"},
		{"deleted row", func(r []persistence.AuditRow) []persistence.AuditRow { return append(r[:2], r[3:]...) }, "rows are missing"},
		{"rehashed row", func(r []persistence.AuditRow) []persistence.AuditRow {
			r[1].Outcome = "denied"
			r[1].Hash = Hash(r[1].PrevHash, &r[1])
			return r
		}, "seq 3: prev_hash"},
		{"swapped fields between strings", func(r []persistence.AuditRow) []persistence.AuditRow {
			r[0].Subject, r[0].Role = "d1doctor", ""
			return r
		}, "seq 1: hash"},
	}
	for _, tt := range tests {
		err := verify(tt.tamper(chain(5)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: verify = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	r := chain(1)[0]
	prev := r.Hash
	for b.Loop() {
		prev = Hash(prev, &r)
	}
}
