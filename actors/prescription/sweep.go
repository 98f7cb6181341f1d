package prescription

import (
	"context"
	"log/slog"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
)

// sweepBatch is how many due prescriptions one pass of the sweep reads.
const sweepBatch = 200

// Sweeper expires prescriptions whose duration has ended. It finds them in
// the database and nudges their grains, so expiry depends on no
// activation's timer and survives restarts. Every node sweeps; a grain
// expires once, whoever nudges it first.
type Sweeper struct {
	DB      *persistence.DB
	Cluster *actorcluster.Cluster
	// Every is the pause between passes.
	Every  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// sweepCaller is who the sweep's requests come from.
var sweepCaller = &messages.Caller{Role: messages.Role_ROLE_SERVICE, Subject: "caregrid/prescription-expiry"}

// Run sweeps until ctx ends.
func (s Sweeper) Run(ctx context.Context) {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		s.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass expires every prescription due now; it returns how many it nudged.
func (s Sweeper) Pass(ctx context.Context) int {
	nudged := 0
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ids, err := s.DB.DuePrescriptions(qctx, s.Now(), sweepBatch)
		cancel()
		if err != nil {
			s.Logger.Warn("prescription expiry: cannot list due prescriptions", "error", err)
			return nudged
		}
		failed := 0
		for _, id := range ids {
			_, err := cluster.Call(ctx, s.Cluster, "Prescription", id, func() (*messages.PrescriptionReply, error) {
				return messages.GetPrescriptionGrainClient(s.Cluster, id).Expire(&messages.ExpirePrescriptionRequest{Caller: sweepCaller},
					cluster.CallOptions(0)...)
			})
			if err != nil {
				failed++
				s.Logger.Warn("prescription expiry failed; the next pass retries", "prescription", id, "error", err)
			}
			nudged++
		}
		// A short or failing batch: the rest waits for the next pass.
		if len(ids) < sweepBatch || failed > 0 {
			return nudged
		}
	}
	return nudged
}
