package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/google/uuid"
)

// DefaultCheckpointEvery is how often a member signs the chain heads.
const DefaultCheckpointEvery = time.Minute

// CheckpointMessage is what a checkpoint's signature covers: the shard,
// the head's seq and hash, and when it was signed.
func CheckpointMessage(c persistence.Checkpoint) []byte {
	b := []byte("caregrid-audit-checkpoint-v1\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(c.Shard))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(c.SignedAt.UnixMicro()))
	return append(b, c.Hash...)
}

// keyAAD binds a sealed signing key to its id.
func keyAAD(id string) string { return "audit-signing-key:" + id }

// NewSigningKey makes a signing key, its private half sealed with master.
func NewSigningKey(master *seal.Key, now time.Time) (persistence.AuditKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return persistence.AuditKey{}, err
	}
	id := uuid.NewString()
	return persistence.AuditKey{ID: id, Public: pub, Private: master.Seal(priv.Seed(), keyAAD(id)), CreatedAt: now.UTC().Truncate(time.Microsecond)}, nil
}

// Checkpointer signs every shard's chain head every Every, on every
// member: a head already signed is skipped, and two members signing the
// same head store it once.
type Checkpointer struct {
	DB     *persistence.DB
	Master *seal.Key
	Every  time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Run signs until ctx ends.
func (c Checkpointer) Run(ctx context.Context) {
	every := c.Every
	if every <= 0 {
		every = DefaultCheckpointEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := c.Sign(ctx); err != nil && ctx.Err() == nil {
				c.Logger.Error("audit checkpoint failed", "signed", n, "error", err)
			}
		}
	}
}

// Sign signs the head of every shard whose head moved since its last
// checkpoint, making the first signing key if there is none.
func (c Checkpointer) Sign(ctx context.Context) (int, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	key, err := c.activeKey(ctx, now())
	if err != nil {
		return 0, err
	}
	seed, err := c.Master.Open(key.Private, keyAAD(key.ID))
	if err != nil {
		return 0, fmt.Errorf("audit signing key %s: %w", key.ID, err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	shards, err := c.DB.AuditShards(ctx)
	if err != nil {
		return 0, err
	}
	signed := 0
	for _, shard := range shards {
		seq, hash, err := c.DB.AuditHead(ctx, shard)
		if err != nil {
			return signed, err
		}
		last, err := c.DB.LastCheckpointSeq(ctx, shard)
		if err != nil {
			return signed, err
		}
		if seq == 0 || last >= seq {
			continue
		}
		cp := persistence.Checkpoint{Shard: shard, Seq: seq, Hash: hash, SignedAt: now().UTC().Truncate(time.Microsecond), KeyID: key.ID}
		cp.Signature = ed25519.Sign(priv, CheckpointMessage(cp))
		if err := c.DB.AddCheckpoint(ctx, cp); err != nil {
			return signed, err
		}
		signed++
	}
	return signed, nil
}

func (c Checkpointer) activeKey(ctx context.Context, now time.Time) (persistence.AuditKey, error) {
	key, err := c.DB.ActiveAuditKey(ctx)
	if !errors.Is(err, persistence.ErrNotFound) {
		return key, err
	}
	k, err := NewSigningKey(c.Master, now)
	if err != nil {
		return persistence.AuditKey{}, err
	}
	if err := c.DB.AddAuditKey(ctx, k, false); err != nil && !errors.Is(err, persistence.ErrExists) {
		return persistence.AuditKey{}, err
	}
	return c.DB.ActiveAuditKey(ctx) // ours, or the one another member made first
}

// CheckCheckpoints checks a shard's checkpoints against its chain: each
// signature against its key's public half (keys by id), each checkpointed
// hash against the chain's hash at that seq (hashes, seq -> hash, as the
// chain walk found them), and the chain against its last checkpoint:
// shorter is a cut tail.
func CheckCheckpoints(shard int32, cps []persistence.Checkpoint, keys map[string][]byte, hashes map[int64][]byte, head int64) error {
	for _, cp := range cps {
		pub, ok := keys[cp.KeyID]
		if !ok || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, CheckpointMessage(cp), cp.Signature) {
			return fmt.Errorf("shard %d: the checkpoint at seq %d is not signed by a known key", shard, cp.Seq)
		}
		if cp.Seq > head {
			return fmt.Errorf("shard %d: the chain ends at seq %d, but seq %d was signed: its tail was cut", shard, head, cp.Seq)
		}
		if h, ok := hashes[cp.Seq]; !ok || !bytes.Equal(h, cp.Hash) {
			return fmt.Errorf("shard %d: seq %d is not what was signed: the chain was rewritten", shard, cp.Seq)
		}
	}
	return nil
}
