package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/caregrid/caregrid/persistence"
)

// ExportedLog is a patient's access log as an export carries it: each
// entry with its place in its shard's chain, the checkpoints that sign the
// chains after the entries, and the public keys. VerifyExported checks it
// offline, without the database.
type ExportedLog struct {
	Entries     []ExportedEntry      `json:"entries"`
	Checkpoints []ExportedCheckpoint `json:"checkpoints"`
	Keys        []ExportedKey        `json:"keys"`
}

// ExportedEntry is one audit row, every hashed field included.
type ExportedEntry struct {
	Shard            int32     `json:"shard"`
	Seq              int64     `json:"seq"`
	OccurredAt       time.Time `json:"occurred_at"`
	Subject          string    `json:"subject"`
	Role             string    `json:"role"`
	Client           string    `json:"client"`
	PurposeOfUse     string    `json:"purpose_of_use"`
	BreakGlassReason string    `json:"break_glass_reason,omitempty"`
	RequestID        string    `json:"request_id"`
	ClientRequestID  string    `json:"client_request_id,omitempty"`
	SourceAddress    string    `json:"source_address"`
	Action           string    `json:"action"`
	ResourceType     string    `json:"resource_type"`
	ResourceID       string    `json:"resource_id"`
	PatientID        string    `json:"patient_id"`
	Outcome          string    `json:"outcome"`
	Detail           string    `json:"detail,omitempty"`
	PrevHash         string    `json:"prev_hash"`
	Hash             string    `json:"hash"`
}

// ExportedCheckpoint is a signed chain head.
type ExportedCheckpoint struct {
	Shard     int32     `json:"shard"`
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	SignedAt  time.Time `json:"signed_at"`
	KeyID     string    `json:"key_id"`
	Signature string    `json:"signature"`
}

// ExportedKey is a signing key's public half (hex).
type ExportedKey struct {
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
}

// NewExportedLog builds the exported form of rows and the checkpoints and
// keys that sign them.
func NewExportedLog(rows []persistence.AuditRow, cps []persistence.Checkpoint, keys []persistence.AuditKey) ExportedLog {
	l := ExportedLog{Entries: []ExportedEntry{}, Checkpoints: []ExportedCheckpoint{}, Keys: []ExportedKey{}}
	for _, r := range rows {
		l.Entries = append(l.Entries, ExportedEntry{Shard: r.Shard, Seq: r.Seq, OccurredAt: r.OccurredAt.UTC(), Subject: r.Subject,
			Role: r.Role, Client: r.Client, PurposeOfUse: r.PurposeOfUse, BreakGlassReason: r.BreakGlassReason,
			RequestID: r.RequestID, ClientRequestID: r.ClientRequestID, SourceAddress: r.SourceAddress, Action: r.Action,
			ResourceType: r.ResourceType, ResourceID: r.ResourceID, PatientID: r.PatientID, Outcome: r.Outcome, Detail: r.Detail,
			PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash)})
	}
	for _, c := range cps {
		l.Checkpoints = append(l.Checkpoints, ExportedCheckpoint{Shard: c.Shard, Seq: c.Seq, Hash: hex.EncodeToString(c.Hash),
			SignedAt: c.SignedAt.UTC(), KeyID: c.KeyID, Signature: hex.EncodeToString(c.Signature)})
	}
	for _, k := range keys {
		l.Keys = append(l.Keys, ExportedKey{ID: k.ID, PublicKey: hex.EncodeToString(k.Public)})
	}
	return l
}

// ExportReport is what VerifyExported found.
type ExportReport struct {
	// Entries is how many entries hash to what the chain holds; Linked how
	// many follow the entry before them in their shard directly (seq+1,
	// prev_hash = that entry's hash); Checkpoints how many signatures hold.
	Entries, Linked, Checkpoints int
	// Matched is how many entries a checkpoint signs by seq and hash.
	Matched int
}

// VerifyExported checks an exported log offline: every entry's hash
// against its fields and prev_hash (an entry changed after it was chained
// fails), entries adjacent in a shard against each other, and every
// checkpoint's signature against keys (id -> Ed25519 public key; nil: the
// keys the export carries, which proves less than keys kept elsewhere,
// such as a copy of /.well-known/caregrid-audit-keys). What it cannot
// check offline is the chain between an entry and the next checkpoint:
// those rows are other patients'.
func VerifyExported(l ExportedLog, keys map[string][]byte) (ExportReport, error) {
	var rep ExportReport
	if keys == nil {
		keys = map[string][]byte{}
		for _, k := range l.Keys {
			pub, err := hex.DecodeString(k.PublicKey)
			if err != nil {
				return rep, fmt.Errorf("key %s: %v", k.ID, err)
			}
			keys[k.ID] = pub
		}
	}
	signed := map[[2]int64][]byte{}
	for _, c := range l.Checkpoints {
		h, err1 := hex.DecodeString(c.Hash)
		sig, err2 := hex.DecodeString(c.Signature)
		pub := keys[c.KeyID]
		cp := persistence.Checkpoint{Shard: c.Shard, Seq: c.Seq, Hash: h, SignedAt: c.SignedAt, KeyID: c.KeyID, Signature: sig}
		if err1 != nil || err2 != nil || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, CheckpointMessage(cp), sig) {
			return rep, fmt.Errorf("shard %d: the checkpoint at seq %d is not signed by a known key", c.Shard, c.Seq)
		}
		signed[[2]int64{int64(c.Shard), c.Seq}] = h
		rep.Checkpoints++
	}
	last := map[int32]ExportedEntry{}
	for _, e := range l.Entries {
		prev, err1 := hex.DecodeString(e.PrevHash)
		hash, err2 := hex.DecodeString(e.Hash)
		if err1 != nil || err2 != nil {
			return rep, fmt.Errorf("shard %d seq %d: hashes are not hex", e.Shard, e.Seq)
		}
		row := persistence.AuditRow{Shard: e.Shard, Seq: e.Seq, OccurredAt: e.OccurredAt, Subject: e.Subject, Role: e.Role,
			Client: e.Client, PurposeOfUse: e.PurposeOfUse, BreakGlassReason: e.BreakGlassReason, RequestID: e.RequestID,
			SourceAddress: e.SourceAddress, Action: e.Action, ResourceType: e.ResourceType, ResourceID: e.ResourceID,
			PatientID: e.PatientID, Outcome: e.Outcome, Detail: e.Detail, ClientRequestID: e.ClientRequestID}
		if !bytes.Equal(Hash(prev, &row), hash) {
			return rep, fmt.Errorf("shard %d seq %d: the entry does not hash to what the chain holds: it was changed", e.Shard, e.Seq)
		}
		rep.Entries++
		if p, ok := last[e.Shard]; ok && p.Seq+1 == e.Seq {
			if p.Hash != e.PrevHash {
				return rep, fmt.Errorf("shard %d seq %d: does not follow seq %d", e.Shard, e.Seq, p.Seq)
			}
			rep.Linked++
		}
		if h, ok := signed[[2]int64{int64(e.Shard), e.Seq}]; ok {
			if !bytes.Equal(h, hash) {
				return rep, fmt.Errorf("shard %d seq %d: not what was signed", e.Shard, e.Seq)
			}
			rep.Matched++
		}
		last[e.Shard] = e
	}
	return rep, nil
}
