// Package audit is the audit trail: each member appends access events to
// a hash chain of its own (Chain, a new shard per member incarnation) in
// group-committed batches, and Recorder is how its grains and edge hand
// them events and wait until they are durable. A patient's events may lie
// in several chains; each event keeps the instant it happened, by which
// the access log orders them.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/caregrid/caregrid/persistence"
)

// Hash returns the chain hash of r given the hash of the row before it:
// SHA-256 over a versioned, length-prefixed encoding of every stored field
// and prev. Changing, removing or reordering any row breaks every later hash.
func Hash(prev []byte, r *persistence.AuditRow) []byte {
	var b []byte
	b = append(b, "caregrid-audit-v1\x00"...)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Shard))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.OccurredAt.UnixMicro()))
	for _, s := range []string{r.Subject, r.Role, r.Client, r.PurposeOfUse, r.BreakGlassReason,
		r.RequestID, r.SourceAddress, r.Action, r.ResourceType, r.ResourceID, r.PatientID, r.Outcome, r.Detail} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	if r.ClientRequestID != "" {
		// Added later: hashed only when set, after a marker no v1 row has
		// here, so rows written before keep their hashes.
		b = append(b, "\x00client-request-id"...)
		b = binary.AppendUvarint(b, uint64(len(r.ClientRequestID)))
		b = append(b, r.ClientRequestID...)
	}
	b = binary.AppendUvarint(b, uint64(len(prev)))
	b = append(b, prev...)
	sum := sha256.Sum256(b)
	return sum[:]
}

// Verifier checks one shard's chain row by row, in seq order.
type Verifier struct {
	Shard int32
	Rows  int64
	seq   int64
	hash  []byte
}

// Next checks the next row of the chain.
func (v *Verifier) Next(r persistence.AuditRow) error {
	if r.Shard != v.Shard {
		return fmt.Errorf("shard %d: row of shard %d in its chain", v.Shard, r.Shard)
	}
	if r.Seq != v.seq+1 {
		return fmt.Errorf("shard %d: seq %d follows %d: rows are missing", v.Shard, r.Seq, v.seq)
	}
	if !bytes.Equal(r.PrevHash, v.hash) {
		return fmt.Errorf("shard %d seq %d: prev_hash does not match the hash of seq %d", v.Shard, r.Seq, v.seq)
	}
	if want := Hash(v.hash, &r); !bytes.Equal(r.Hash, want) {
		return fmt.Errorf("shard %d seq %d: hash does not match the row: the row was changed", v.Shard, r.Seq)
	}
	v.seq, v.hash = r.Seq, r.Hash
	v.Rows++
	return nil
}
