package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/actors/clinic"
	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/actors/prescription"
	"github.com/caregrid/caregrid/actors/proof"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/edge/console"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/caregrid/caregrid/search"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/text/language"
)

// nodeConfig is everything a node needs besides its database.
type nodeConfig struct {
	ClusterName  string
	ClusterHost  string
	ClusterPort  int
	ClusterTLS   *cluster.TLS // nil: plaintext remoting, loopback only
	ClusterPeers []string     // every member's remoting address (nil: single node)
	// OnDropped is told when the cluster has dropped this member (see
	// cluster.Config): serve then rejoins under a new member id.
	OnDropped    func()
	Consul       *cluster.Consul // nil: not Consul
	EdgeOnly     bool            // a cluster client: the HTTP edge, no grains, no background work
	Agent        *cluster.Agent  // nil: single node
	GrainIdle    time.Duration
	GrainTimeout time.Duration
	// CareWindow: how long around an appointment its doctor may read the
	// record; CheckInOpens: how early an appointment can be checked in.
	CareWindow   persistence.CareWindow
	CheckInOpens time.Duration
	// AuditCheckpointEvery is how often this member signs the audit chain
	// heads (0: audit.DefaultCheckpointEvery).
	AuditCheckpointEvery time.Duration
	// AuditCheckEvery is how often the whole audit trail is checked
	// (0: audit.DefaultTrailCheckEvery; negative: never on a schedule).
	AuditCheckEvery time.Duration
	// Tracing: requests are traced (internal/tracing is set up).
	Tracing bool
	// Retention is how long each kind of record is kept (zero:
	// persistence.DefaultRetention); the sweeps' pauses (zero: their
	// defaults) and how long an export's link works.
	Retention                    persistence.Retention
	RetentionSweep, ErasureSweep time.Duration
	ExportExpiry                 time.Duration
	// ExportPoll is the pause between the exporter's looks at its queue
	// (0: 2 s).
	ExportPoll time.Duration
	// Now is the patient grains' clock (nil: time.Now): tests move it to
	// see a grant lapse.
	Now  func() time.Time
	Auth edge.Authenticator
	// Identity configures the embedded OpenID Provider (nil: none); its
	// access tokens are accepted beside Auth's.
	Identity *identity.Config
	// Master is the master key: it wraps the patients' data keys (nil:
	// clinical records are refused).
	Master *seal.Key
	// ExternalIssuers are identity providers whose tokens are accepted too.
	ExternalIssuers []identity.ExternalIssuer
	// RateLimits are the API's request budgets (nil: none).
	RateLimits *edge.RateLimits
	// Documents configures document uploads (nil: off).
	Documents *edge.Documents
	// ExpirySweep is the pause between passes of the prescription expiry
	// sweep (0: one minute).
	ExpirySweep time.Duration
	Logger      *slog.Logger
	// HTTPS: the public URL is https (answers carry HSTS).
	HTTPS bool
	// ActorLogger receives proto.actor's logs; nil: warnings on stderr.
	ActorLogger *slog.Logger
	// Notify configures notifications (nil: none). They need Master too:
	// messages are sealed in the database.
	Notify *notifyConfig
}

// notifyConfig is a node's notification channels and policies.
type notifyConfig struct {
	// Email and SMS send over their channel (nil: the channel is off).
	// An Email also carries the login pages' mail, queued.
	Email, SMS notify.Sender
	// Push turns Web Push on, signed with the VAPID key derived from the
	// master key; PushContact is its VAPID subject; PushClient sends
	// (nil: http.DefaultClient).
	Push        bool
	PushContact string
	PushClient  *http.Client
	// Templates is an operator's directory of template overrides.
	Templates string
	// Language is the language of patients who chose none; PortalURL is
	// where messages send them.
	Language, PortalURL string
	// Reminders are the default reminder offsets in minutes (nil:
	// notify.DefaultReminders).
	Reminders []int32
	Retry     notify.Retry
	// Trip, Open configure the channels' breakers; Lease the dispatchers'
	// lease; Idle their pause (zero: the notify defaults).
	Trip               int
	Open, Lease, Idle  time.Duration
	PrescriptionNotice time.Duration
	// Now is the notifications' clock (nil: time.Now): tests move it to
	// make reminders fall due.
	Now func() time.Time
	// OnDropped is told when the cluster has dropped this member (see
	// cluster.Config): serve then rejoins under a new member id.
	OnDropped func()
}

// node is a started member with its edge and its outbox relay.
type node struct {
	member    *cluster.Node
	edge      *edge.Server
	stopRelay context.CancelFunc
	relayDone chan struct{}
	// notifications is nil without them.
	notifications *notifications
	// registry holds the node's metrics (/metrics).
	registry *nodeRegistry
	// commits groups the calendar grains' writes (nil on an edge-only node).
	commits *calendar.Committer
}

// kinds builds every grain kind a member hosts, registered once here.
func kinds(db *persistence.DB, cfg nodeConfig, calStats *calendar.Stats, pf *proof.Checker, rec audit.Recorder, commits *calendar.Committer) []*actorcluster.Kind {
	blobs := cfg.blobs()
	return []*actorcluster.Kind{
		patient.Kind(patient.Deps{DB: db, Audit: rec, Logger: cfg.Logger, Master: cfg.Master, Proof: pf,
			CareWindow: cfg.CareWindow, Retention: cfg.Retention, ExportExpiry: cfg.ExportExpiry, Blobs: blobs, Now: cfg.Now,
			NotifyLanguage: cfg.notifyLanguage()}, cfg.GrainIdle),
		prescription.Kind(prescription.Deps{DB: db, Audit: rec, Logger: cfg.Logger, Master: cfg.Master,
			GrainTimeout: cfg.GrainTimeout, Proof: pf, CareWindow: cfg.CareWindow}, cfg.GrainIdle),
		calendar.Kind(calendar.Deps{DB: db, Audit: rec, Logger: cfg.Logger, Stats: calStats, Proof: pf,
			CheckInOpens: cfg.CheckInOpens, Commits: commits}, cfg.GrainIdle),
		clinic.Kind(clinic.Deps{DB: db, Audit: rec, Logger: cfg.Logger, Proof: pf}, cfg.GrainIdle),
	}
}

// tokenVerifier is the edge's authenticator as the grains' token verifier:
// the same chain (embedded provider, external issuers, development tokens)
// and the same caches.
func tokenVerifier(auth edge.Authenticator) proof.TokenVerifier {
	return func(token string) (proof.Principal, error) {
		if auth == nil {
			return proof.Principal{}, proof.ErrInvalidToken
		}
		p, err := auth.Authenticate(token)
		if errors.Is(err, edge.ErrUnauthenticated) {
			return proof.Principal{}, proof.ErrInvalidToken
		}
		if err != nil {
			return proof.Principal{}, err
		}
		return proof.Principal{Subject: p.Subject, Role: p.Role, Client: p.Client, Session: p.Session}, nil
	}
}

func startNode(ctx context.Context, db *persistence.DB, cfg nodeConfig) (*node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var hosted []*actorcluster.Kind
	calStats := &calendar.Stats{}
	pf := proof.NewChecker(cfg.Logger)
	reg := newNodeRegistry()
	// Every node, an edge-only one too, records what it serves in an audit
	// chain of its own (actors/audit.Chain), opened once it has joined.
	auditChain := audit.NewChain(audit.Deps{DB: db, Logger: cfg.Logger, Metrics: audit.NewMetrics(reg)})
	rec := audit.Recorder{Chain: auditChain, Timeout: cfg.GrainTimeout}
	var commits *calendar.Committer
	if !cfg.EdgeOnly {
		commits = calendar.NewCommitter(db, 0, func() error { return rec.Drain(cfg.Logger) })
		hosted = kinds(db, cfg, calStats, pf, rec, commits)
	}
	// The member joins the others' topology once it can serve (closed at
	// the end of startNode).
	admit := make(chan struct{})
	member, err := cluster.Start(ctx, cluster.Config{
		Name: cfg.ClusterName, Host: cfg.ClusterHost, Port: cfg.ClusterPort, TLS: cfg.ClusterTLS,
		Agent: cfg.Agent, Peers: cfg.ClusterPeers, Consul: cfg.Consul, Kinds: hosted, Client: cfg.EdgeOnly, Logger: cfg.ActorLogger,
		OnDropped: cfg.OnDropped, Admit: admit,
	})
	if err != nil {
		commits.Close()
		return nil, err
	}
	if err := auditChain.Open(ctx, member.System, member.System.ID, member.Address()); err != nil {
		member.Stop(false)
		commits.Close()
		return nil, err
	}
	if commits != nil {
		// The calendar committer chains the audit events of the groups it
		// writes in their own transactions, onto a chain of its own.
		w, err := audit.OpenWriter(ctx, db, member.System.ID, member.Address())
		if err != nil {
			member.Stop(false)
			commits.Close()
			return nil, err
		}
		commits.UseChain(w)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "caregrid_cluster_members", Help: "Members this node sees in the cluster topology.",
	}, func() float64 { return float64(member.Members()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "caregrid_cluster_rejoins_total", Help: "Times this process rejoined its cluster under a new member id after its peers dropped it.",
	}, func() float64 { return float64(rejoins.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "caregrid_db_pool_acquired_conns", Help: "Database connections in use.",
	}, func() float64 { return float64(db.Pool.Stat().AcquiredConns()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "caregrid_db_pool_max_conns", Help: "Database connections the pool may open.",
	}, func() float64 { return float64(db.Pool.Stat().MaxConns()) }))
	reg.MustRegister(newMapCounter("caregrid_fence_conflicts_total",
		"Fenced writes refused because another activation of the grain owns it (a second activation caught), by grain kind.",
		[]string{"kind"}, persistence.FenceConflicts))
	reg.MustRegister(auditCollector{db: db})
	member.RegisterCallMetrics(reg)
	stats := newMemberStats(reg.Registry)
	member.SetStats(stats.current)
	registerCalendarMetrics(reg, calStats)
	if commits != nil {
		registerCommitMetrics(reg, commits)
	}
	relay := &persistence.Relay{DB: db, Project: search.Projectors(calendar.Project, search.Project), Logger: cfg.Logger}
	registerRelayMetrics(reg, relay)
	notifications, err := newNotifications(db, cfg)
	if err != nil {
		member.Stop(false)
		return nil, err
	}
	if notifications != nil {
		relay.Project = search.Projectors(calendar.Project, search.Project, notify.Project)
		notifications.register(reg)
	}
	auth, mounts, sessions, accounts := cfg.Auth, []edge.Mount(nil), edge.Sessions(nil), edge.Accounts(nil)
	var sweeper *identity.Provider
	if cfg.Identity != nil {
		ic := *cfg.Identity
		ic.Events = newCountedLogins(identity.AuditEvents{Recorder: rec, Logger: cfg.Logger}, reg)
		if notifications != nil && notifications.mail {
			// Account mail leaves the request path: the request writes it,
			// the dispatchers send it with retries.
			ic.Mailer = notify.Queue{DB: db, Decider: notifications.decider}
		}
		provider, err := identity.New(ic)
		if err != nil {
			member.Stop(false)
			return nil, err
		}
		mounts = append(mounts, edge.Mount{Prefix: identity.PathPrefix, Handler: provider.Handler()})
		// The console signs in as a public client of this provider, with
		// this node's URL among its redirect URIs.
		base := strings.TrimSuffix(ic.Issuer, identity.PathPrefix)
		if err := db.EnsurePublicClient(ctx, persistence.Client{ID: console.ClientID, Name: "caregrid console",
			RedirectURIs: []string{base + console.CallbackPath}, PostLogoutRedirectURIs: []string{base + console.SignedOutPath}}); err != nil {
			member.Stop(false)
			return nil, fmt.Errorf("the console's OpenID client: %w", err)
		}
		mounts = append(mounts, edge.Mount{Prefix: console.PathPrefix, Handler: console.Handler(console.Config{
			Issuer: ic.Issuer, DefaultLocale: ic.DefaultLocale, Logger: cfg.Logger})})
		sessions, accounts = provider.Sessions(), provider.Accounts()
		sweeper = provider
		auth = chain(auth, provider.Verifier())
	}
	if len(cfg.ExternalIssuers) > 0 {
		external, err := identity.NewExternal(context.Background(), cfg.ExternalIssuers)
		if err != nil {
			member.Stop(false)
			return nil, err
		}
		// Before the provider's verifier: it turns away other issuers' tokens
		// after one look at their iss, without a key lookup.
		auth = chain(external, auth)
	}
	pf.SetVerifier(tokenVerifier(auth))
	registerTrustMetrics(reg, member, pf)
	var defaultLocale language.Tag
	if cfg.Identity != nil {
		defaultLocale = cfg.Identity.DefaultLocale
	}
	var idKey []byte
	if cfg.Master != nil {
		k := cfg.Master.Derive("resource-ids")
		idKey = k[:]
	}
	relayCtx, stopRelay := context.WithCancel(context.Background())
	trail := audit.TrailChecker{DB: db, Member: member.Address(), Every: cfg.AuditCheckEvery, Logger: cfg.Logger}
	srv := edge.New(edge.Config{
		DefaultLocale: defaultLocale,
		HTTPS:         cfg.HTTPS,
		Cluster:       member.Cluster, Auth: auth, Logger: cfg.Logger, GrainTimeout: cfg.GrainTimeout, Metrics: reg.Registry, Directory: db, IDKey: idKey,
		Search: db, Lists: db, Names: db, Reviews: reviewQueue{DB: db, master: cfg.Master}, Erasures: db, Exports: exportDesk{DB: db, master: cfg.Master}, AuditKeys: db, Audit: &rec,
		Slots: &calendar.Finder{Store: db}, Mounts: mounts, Sessions: sessions, Accounts: accounts, RateLimits: cfg.RateLimits, Documents: cfg.Documents,
		ClusterView: member.View,
		AuditTrail:  trailDesk{DB: db, checker: trail, ctx: relayCtx},
		Analytics:   db, Tracing: cfg.Tracing,
		Notifications: notifications.desk(db), VAPIDPublicKey: notifications.vapidPublic(), DefaultReminders: notifications.reminders(),
		Ready: func(ctx context.Context) error {
			if err := db.Ping(ctx); err != nil {
				return errors.New("database unreachable")
			}
			if err := member.Ready(); err != nil {
				return err
			}
			return nil
		},
	})
	blobs := cfg.blobs()
	n := &node{member: member, edge: srv, stopRelay: stopRelay, relayDone: make(chan struct{}), notifications: notifications, registry: reg, commits: commits}
	go func() {
		defer close(n.relayDone)
		if cfg.EdgeOnly {
			return // the relay and the sweeps run on the members
		}
		if sweeper != nil {
			go sweeper.Sweep(relayCtx, time.Hour) // stops with the relay
		}
		go backfillSearch(relayCtx, db, cfg.Logger)
		go trail.Run(relayCtx)
		if notifications != nil {
			notifications.run(relayCtx)
		}
		go audit.Drainer{DB: db, Recorder: rec,
			Logger: cfg.Logger}.Run(relayCtx)
		if cfg.Master != nil && blobs != nil {
			go patient.Exporter{DB: db, Master: cfg.Master, Blobs: blobs, Owner: member.Address(), Index: edge.ExportIndex,
				Every: cfg.ExportPoll, Logger: cfg.Logger, Now: cfg.Now}.Run(relayCtx)
		}
		if cfg.Master != nil {
			go sealPlain(relayCtx, db, cfg.Master, cfg.Logger)
			go audit.Checkpointer{DB: db, Master: cfg.Master, Every: cfg.AuditCheckpointEvery, Logger: cfg.Logger}.Run(relayCtx)
		}
		every := cfg.ExpirySweep
		if every <= 0 {
			every = time.Minute
		}
		// The sweeps call grains: the member stops only after they have.
		swept := make(chan struct{}, 2)
		go func() {
			defer func() { swept <- struct{}{} }()
			prescription.Sweeper{DB: db, Cluster: member.Cluster, Every: every, Logger: cfg.Logger}.Run(relayCtx)
		}()
		go func() {
			defer func() { swept <- struct{}{} }()
			retention := cfg.Retention
			if retention == (persistence.Retention{}) {
				retention = persistence.DefaultRetention
			}
			patient.RetentionSweeper{DB: db, Cluster: member.Cluster, Blobs: blobs, Retention: retention,
				ErasureEvery: cfg.ErasureSweep, RetentionEvery: cfg.RetentionSweep, Now: cfg.Now, Logger: cfg.Logger}.Run(relayCtx)
		}()
		defer func() { <-swept; <-swept }()
		relay.Run(relayCtx)
	}()
	close(admit) // its grains can prove callers and audit: others may call it
	return n, nil
}

// chain accepts what any of auths accepts; nil ones are skipped.
func chain(auths ...edge.Authenticator) edge.Authenticator {
	var live []edge.Authenticator
	for _, a := range auths {
		if a != nil {
			live = append(live, a)
		}
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return live[0]
	}
	return edge.AnyOf(live...)
}

func registerCalendarMetrics(reg prometheus.Registerer, s *calendar.Stats) {
	for _, w := range []struct {
		label string
		n     *atomic.Int64
	}{{"at_once", &s.WrittenAtOnce}, {"hold_then_confirm", &s.HeldThenConfirmed}} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "caregrid_calendar_bookings_confirmed_total", ConstLabels: prometheus.Labels{"write": w.label},
			Help: "Bookings this node's calendar grains confirmed, by write: at_once (the patient accepted before the hold was written) or hold_then_confirm.",
		}, func() float64 { return float64(w.n.Load()) }))
	}
}

// registerCommitMetrics exports what the calendar committer wrote: the
// batches per group show how much bookings spread over doctors are grouped,
// and batches written alone (a fence failed, a claim was in progress, a
// group failed) are the ones whose audit waited for the member's chain.
func registerCommitMetrics(reg prometheus.Registerer, c *calendar.Committer) {
	for _, m := range []struct {
		name, help string
		of         func() int64
	}{
		{"caregrid_calendar_commit_groups_total", "Group transactions this member's calendar committer wrote.", func() int64 { g, _, _ := c.Counts(); return g }},
		{"caregrid_calendar_commit_batches_total", "Calendar batches (one grain's changes) in those groups.", func() int64 { _, b, _ := c.Counts(); return b }},
		{"caregrid_calendar_commit_alone_total", "Calendar batches written alone (fenced, a claim in progress, or after a failed group): their audit events wait for the member's chain.", func() int64 { _, _, a := c.Counts(); return a }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, func() float64 { return float64(m.of()) }))
	}
}

func registerTrustMetrics(reg prometheus.Registerer, member *cluster.Node, pf *proof.Checker) {
	reg.MustRegister(newMapCounter("caregrid_cluster_messages_dropped_total",
		"Remoting messages dropped because their sender may not send them (lifecycle and gossip messages from edges and services), by sender kind and message type.",
		[]string{"peer", "type"}, func() map[string]int64 { return member.Inbound.Dropped() }))
	reg.MustRegister(newMapCounter("caregrid_grain_requests_unproven_total",
		"Grain requests refused because their caller could not be proven, by reason.",
		[]string{"reason"}, pf.Refused))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "caregrid_cluster_inbound_connections", Help: "Remoting streams connected to this node (members, edges, services).",
	}, func() float64 { return float64(len(member.Inbound.Connections())) }))
}

func registerRelayMetrics(reg prometheus.Registerer, r *persistence.Relay) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "caregrid_outbox_relayed_total", Help: "Outbox events this node's relay delivered to the read models.",
	}, func() float64 { return float64(r.Delivered()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "caregrid_outbox_refused_total", Help: "Outbox events that could not be projected (malformed); each is logged.",
	}, func() float64 { return float64(r.Refused()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "caregrid_outbox_relay_lag_seconds", Help: "Age of the oldest event in the relay's latest batch: how far read models trail (0 when caught up).",
	}, func() float64 { return r.Lag().Seconds() }))
}

// stop drains HTTP first (in-flight requests finish), then leaves the cluster.
func (n *node) stop(graceful bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := n.edge.Shutdown(ctx)
	n.stopRelay()
	<-n.relayDone
	if n.notifications != nil {
		n.notifications.close()
	}
	n.member.Stop(graceful)
	n.commits.Close()
	if err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// sealPlain seals the clinical values that rows from before migration 0022
// hold plain (persistence.SealPlain), in the background.
func sealPlain(ctx context.Context, db *persistence.DB, master *seal.Key, logger *slog.Logger) {
	n, err := db.SealPlain(ctx, master)
	switch {
	case err != nil && ctx.Err() == nil:
		logger.Error("sealing plain clinical values stopped; it resumes at the next start", "patients", n, "error", err)
	case n > 0:
		logger.Info("clinical values written before sealing are now sealed", "patients", n)
	}
}

// backfillSearch puts in the search read model the patients it lacks (a
// database upgraded past migration 0016 with patients in it), in the
// background: the node serves meanwhile, and a search finds those not yet
// indexed only once they are.
func backfillSearch(ctx context.Context, db *persistence.DB, logger *slog.Logger) {
	started := time.Now()
	n, err := search.Backfill(ctx, db, nil)
	switch {
	case err != nil && ctx.Err() == nil:
		logger.Error("search backfill stopped: run 'caregrid admin reindex'", "indexed", n, "error", err)
	case n > 0:
		logger.Info("search backfill: patients registered before the search read model are now found", "indexed", n, "took", time.Since(started).Round(time.Millisecond))
	}
}

// reviewQueue is the edge's review queue: the database's, with each
// emergency access's reason opened with its patient's data key (the rows
// keep it sealed).
type reviewQueue struct {
	*persistence.DB
	master *seal.Key
}

func (q reviewQueue) EmergencyReviews(ctx context.Context, review string, after time.Time, afterID string, limit int) ([]persistence.EmergencyAccess, error) {
	es, err := q.DB.EmergencyReviews(ctx, review, after, afterID, limit)
	if err != nil {
		return nil, err
	}
	return es, q.DB.OpenEmergencyReasons(ctx, q.master, es)
}

func (q reviewQueue) ReviewEmergencyAccess(ctx context.Context, id, decision, by, note string, at time.Time,
	audited func(persistence.EmergencyAccess) persistence.PendingAudit) (persistence.EmergencyAccess, error) {
	e, err := q.DB.ReviewEmergencyAccess(ctx, id, decision, by, note, at, audited)
	if err != nil {
		return e, err
	}
	es := []persistence.EmergencyAccess{e}
	err = q.DB.OpenEmergencyReasons(ctx, q.master, es)
	return es[0], err
}

// blobs is the document store (nil: none configured).
func (cfg nodeConfig) blobs() blob.Store {
	if cfg.Documents == nil {
		return nil
	}
	return cfg.Documents.Store
}

// exportDesk serves export downloads: the database's rows, and each
// archive's key opened with the master key.
type exportDesk struct {
	*persistence.DB
	master *seal.Key
}

func (d exportDesk) ExportKey(e persistence.Export) ([]byte, error) {
	if d.master == nil || e.KeySealed == nil {
		return nil, errors.New("no key for the export")
	}
	return d.master.Open(e.KeySealed, patient.ExportKeyAAD(e.ID))
}

// trailDesk is the edge's view of the audit trail: its search, and the
// checks of its chains, which run on this node in the background.
type trailDesk struct {
	*persistence.DB
	checker audit.TrailChecker
	ctx     context.Context // the node's: a check stops with it
}

func (d trailDesk) CheckTrail(ctx context.Context, by string) (persistence.AuditVerification, error) {
	v, err := d.checker.Start(ctx, by)
	if err != nil {
		return v, err
	}
	go d.checker.Finish(d.ctx, v)
	return v, nil
}
