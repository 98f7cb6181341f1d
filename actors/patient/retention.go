package patient

import (
	"context"
	"errors"
	"log/slog"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
)

// RetentionSweeper applies the retention periods and carries out approved
// erasures. It finds the work in the database and sends it to the patient
// grains (Erase, ApplyRetention: member only), which decide and write
// through their fence; every member sweeps, and a patient's grain does
// each piece once, whoever sends it first.
type RetentionSweeper struct {
	DB      *persistence.DB
	Cluster *actorcluster.Cluster
	// Blobs is the document store (nil: erased patients' blobs are left to
	// the store's own lifecycle; they are unreadable already).
	Blobs blob.Store
	// Retention names the records past their period (the grains hold the
	// same periods).
	Retention persistence.Retention
	// ErasureEvery is the pause between looks for approved erasures (0: a
	// minute); RetentionEvery between passes over the records (0: an hour).
	ErasureEvery, RetentionEvery time.Duration
	Now                          func() time.Time
	Logger                       *slog.Logger
}

// retentionCaller is who the sweep's requests come from.
var retentionCaller = &messages.Caller{Role: messages.Role_ROLE_SERVICE, Subject: "caregrid/retention"}

// retentionBatch is how many pieces of work one pass reads.
const retentionBatch = 100

// Run sweeps until ctx ends.
func (s RetentionSweeper) Run(ctx context.Context) {
	if s.ErasureEvery <= 0 {
		s.ErasureEvery = time.Minute
	}
	if s.RetentionEvery <= 0 {
		s.RetentionEvery = time.Hour
	}
	erasures, records := time.NewTicker(s.ErasureEvery), time.NewTicker(s.RetentionEvery)
	defer erasures.Stop()
	defer records.Stop()
	s.Erasures(ctx)
	s.Records(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-erasures.C:
			s.Erasures(ctx)
		case <-records.C:
			s.Records(ctx)
		}
	}
}

func (s RetentionSweeper) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func (s RetentionSweeper) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Erasures sends every approved erasure that is due to its patient's
// grain, then deletes blobs erasures left; it returns how many patients
// were erased.
func (s RetentionSweeper) Erasures(ctx context.Context) int {
	due, err := s.DB.DueErasures(ctx, s.now(), retentionBatch)
	if err != nil {
		s.logger().Warn("retention: cannot list approved erasures", "error", err)
		return 0
	}
	erased := 0
	for _, e := range due {
		reply, err := cluster.Call(ctx, s.Cluster, "Patient", e.PatientID, func() (*messages.ErasureReply, error) {
			return messages.GetPatientGrainClient(s.Cluster, e.PatientID).Erase(&messages.EraseRequest{Caller: retentionCaller, ErasureId: e.ID},
				cluster.CallOptions(0)...)
		})
		switch {
		case err != nil:
			s.logger().Warn("erasure failed; the next pass retries", "erasure", e.ID, "error", err)
		case reply.GetErasure().GetState() == persistence.ErasureErased:
			erased++
		}
	}
	s.blobsLeft(ctx)
	return erased
}

// blobsLeft deletes the blobs an erasure could not delete at once.
func (s RetentionSweeper) blobsLeft(ctx context.Context) {
	if s.Blobs == nil {
		return
	}
	es, err := s.DB.ErasuresWithBlobsLeft(ctx, retentionBatch)
	if err != nil {
		s.logger().Warn("retention: cannot list erased blobs", "error", err)
		return
	}
	for _, e := range es {
		var gone []string
		for _, k := range e.BlobsLeft {
			if err := s.Blobs.Delete(ctx, k); err != nil && !errors.Is(err, blob.ErrNotFound) {
				s.logger().Warn("erased blob not deleted; the next pass retries", "erasure", e.ID, "error", err)
				continue
			}
			gone = append(gone, k)
		}
		if len(gone) > 0 {
			if err := s.DB.BlobsDeleted(ctx, e.ID, gone); err != nil {
				s.logger().Warn("erased blobs not struck off", "erasure", e.ID, "error", err)
			}
		}
	}
}

// Records sends every patient with records past their retention period to
// their grain; it returns how many records were deleted.
func (s RetentionSweeper) Records(ctx context.Context) int64 {
	ids, err := s.DB.PatientsPastRetention(ctx, s.Retention, s.now(), retentionBatch)
	if err != nil {
		s.logger().Warn("retention: cannot list records past their period", "error", err)
		return 0
	}
	var n int64
	for _, id := range ids {
		reply, err := cluster.Call(ctx, s.Cluster, "Patient", id, func() (*messages.ApplyRetentionReply, error) {
			return messages.GetPatientGrainClient(s.Cluster, id).ApplyRetention(&messages.ApplyRetentionRequest{Caller: retentionCaller},
				cluster.CallOptions(0)...)
		})
		if err != nil {
			s.logger().Warn("retention failed; the next pass retries", "patient", id, "error", err)
			continue
		}
		for _, c := range reply.GetDeleted() {
			n += c
		}
	}
	if n > 0 {
		s.logger().Info("retention: records past their period deleted", "records", n, "patients", len(ids))
	}
	return n
}
