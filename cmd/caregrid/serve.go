package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/calendar"
	"github.com/caregrid/caregrid/actors/notify"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
	"github.com/caregrid/caregrid/edge"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/edge/locale"
	"github.com/caregrid/caregrid/edge/ratelimit"
	"github.com/caregrid/caregrid/internal/tracing"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/embedpg"
	"github.com/caregrid/caregrid/persistence/seal"
)

type serveConfig struct {
	HTTPAddr     string
	DatabaseURL  string
	DataDir      string
	Migrate      bool
	DevAuth      bool
	DevAuthKey   string
	ClusterName  string
	ClusterHost  string
	ClusterPort  int
	ClusterTLS   cluster.TLS
	ClusterPeers string
	Provider     string
	ConsulAddr   string
	ConsulTTL    time.Duration
	Role         string
	GrainIdle    time.Duration
	CareWindow   persistence.CareWindow
	CheckInOpens time.Duration
	// AuditCheckpointEvery: how often the audit chain heads are signed.
	AuditCheckpointEvery time.Duration
	// AuditCheckEvery: how often the whole audit trail is checked.
	AuditCheckEvery time.Duration
	// OTLPEndpoint turns tracing on (internal/tracing); TraceSample is
	// the share of new traces recorded.
	OTLPEndpoint string
	TraceSample  float64
	// Retention: how long each kind of record is kept (--retention).
	Retention      string
	RetentionSweep time.Duration
	ErasureSweep   time.Duration
	ExportExpiry   time.Duration
	ExpirySweep    time.Duration
	BlobDir        string
	S3             blob.S3Config
	DocumentMax    int64
	DocumentType   string
	StoreTimeout   time.Duration
	GrainTimeout   time.Duration
	DBMaxConns     int
	LogLevel       string
	PprofAddr      string
	PublicURL      string
	MasterKey      string
	RedisURL       string
	LimitAddress   string
	LimitSubject   string
	SMTPAddr       string
	Locale         string
	CORSOrigins    string
	SMTPFrom       string
	SMTPUser       string
	External       string
	SMPPAddr       string
	SMPPSystemID   string
	SMPPSource     string
	PushContact    string
	Templates      string
	Reminders      string
	NotifyRetries  int
	NotifyLease    time.Duration
}

func serveFlags(args []string) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	port, _ := strconv.Atoi(envOr("CAREGRID_CLUSTER_PORT", "0"))
	fs.StringVar(&c.HTTPAddr, "http-addr", envOr("CAREGRID_HTTP_ADDR", "127.0.0.1:8080"), "HTTP listen address (env CAREGRID_HTTP_ADDR)")
	fs.StringVar(&c.DatabaseURL, "database-url", envOr("DATABASE_URL", ""), "PostgreSQL or CockroachDB URL; empty runs an embedded PostgreSQL under --data-dir (env DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", envOr("CAREGRID_DATA_DIR", ".data"), "local state: the embedded database and the dev-auth key (env CAREGRID_DATA_DIR)")
	fs.BoolVar(&c.Migrate, "migrate", false, "apply pending migrations at start (always on for the embedded database)")
	fs.BoolVar(&c.DevAuth, "dev-auth", false, "accept development tokens from 'caregrid dev-token' (binaries built with -tags devauth only, as by make run)")
	fs.StringVar(&c.DevAuthKey, "dev-auth-key-file", envOr("CAREGRID_DEV_AUTH_KEY_FILE", ""), "development token key (default <data-dir>/dev-auth.key; created if missing) (env CAREGRID_DEV_AUTH_KEY_FILE)")
	fs.StringVar(&c.ClusterName, "cluster-name", envOr("CAREGRID_CLUSTER_NAME", "caregrid"), "cluster name (env CAREGRID_CLUSTER_NAME)")
	fs.StringVar(&c.ClusterHost, "cluster-host", envOr("CAREGRID_CLUSTER_HOST", "127.0.0.1"), "remoting host (always mutual TLS) (env CAREGRID_CLUSTER_HOST)")
	fs.StringVar(&c.ClusterTLS.CAFile, "cluster-tls-ca", envOr("CAREGRID_CLUSTER_TLS_CA", ""), "CA certificate (PEM) that signs every member's certificate; with the two below, the cluster's mutual TLS (required for peers, Consul and edge nodes; a single node without them makes its own under <data-dir>/cluster-tls) (env CAREGRID_CLUSTER_TLS_CA)")
	fs.StringVar(&c.ClusterTLS.CertFile, "cluster-tls-cert", envOr("CAREGRID_CLUSTER_TLS_CERT", ""), "this node's certificate (PEM): for "+cluster.PeerName+" (a member), or "+cluster.EdgeName+" (an edge node) (env CAREGRID_CLUSTER_TLS_CERT)")
	fs.StringVar(&c.ClusterTLS.KeyFile, "cluster-tls-key", envOr("CAREGRID_CLUSTER_TLS_KEY", ""), "this member's private key (PEM) (env CAREGRID_CLUSTER_TLS_KEY)")
	fs.StringVar(&c.Role, "role", envOr("CAREGRID_ROLE", "member"), "member: hosts grains and the HTTP edge; edge: the HTTP edge only, a client of the members in --cluster-peers (env CAREGRID_ROLE)")
	fs.StringVar(&c.Provider, "cluster-provider", envOr("CAREGRID_CLUSTER_PROVIDER", ""), "how members find each other: single (this node alone), peers (--cluster-peers) or consul (the agent at --consul-addr); default: peers when --cluster-peers is set, else single (env CAREGRID_CLUSTER_PROVIDER)")
	fs.StringVar(&c.ConsulAddr, "consul-addr", envOr("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), "the Consul agent (env CONSUL_HTTP_ADDR)")
	fs.DurationVar(&c.ConsulTTL, "consul-ttl", 3*time.Second, "a member silent this long turns critical in Consul; its peers drop it 3 s later")
	fs.StringVar(&c.ClusterPeers, "cluster-peers", envOr("CAREGRID_CLUSTER_PEERS", ""), "remoting addresses (host:port, comma-separated) of every member, this one included: a cluster of static peers; empty: a single node (env CAREGRID_CLUSTER_PEERS)")
	fs.IntVar(&c.ClusterPort, "cluster-port", port, "remoting port; 0 picks a free one (env CAREGRID_CLUSTER_PORT)")
	fs.DurationVar(&c.GrainIdle, "grain-idle", 10*time.Minute, "passivate a patient grain idle this long")
	fs.DurationVar(&c.CareWindow.Before, "care-window-before", persistence.DefaultCareWindow.Before,
		"an appointment lets its doctor read the patient's record from this long before its start (see README: Who may read a record)")
	fs.DurationVar(&c.CareWindow.After, "care-window-after", persistence.DefaultCareWindow.After,
		"... to this long after its start")
	fs.DurationVar(&c.CareWindow.Emergency, "emergency-access-for", persistence.DefaultCareWindow.Emergency,
		"how long a doctor's emergency access (break the glass) lets them read a record")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", envOr("CAREGRID_OTLP_ENDPOINT", ""),
		"OpenTelemetry traces to this OTLP/HTTP collector, such as http://otel-collector:4318: a span per request, per grain call and per SQL statement (no values); empty: no tracing (env CAREGRID_OTLP_ENDPOINT)")
	fs.Float64Var(&c.TraceSample, "trace-sample", 1, "with --otlp-endpoint: the share of requests traced (0 to 1), unless the caller's traceparent decided")
	fs.DurationVar(&c.AuditCheckEvery, "audit-check-every", audit.DefaultTrailCheckEvery,
		"how often a member checks the whole audit trail's chains and signed checkpoints, as `caregrid audit verify` does (the console shows the result; metric caregrid_audit_trail_intact); negative: never")
	fs.DurationVar(&c.AuditCheckpointEvery, "audit-checkpoint-every", audit.DefaultCheckpointEvery,
		"how often each member signs the audit chains' heads (see caregrid audit verify)")
	fs.StringVar(&c.Retention, "retention", envOr("CAREGRID_RETENTION", ""),
		"how long records are kept after their date, as kind=period (25y, 30d) over the defaults visits=25y,documents=25y,vaccinations=25y,clinical-history=25y,prescriptions=10y,appointments=5y (see docs/compliance.md) (env CAREGRID_RETENTION)")
	fs.DurationVar(&c.RetentionSweep, "retention-sweep-every", time.Hour, "how often each member deletes the records past their retention period")
	fs.DurationVar(&c.ErasureSweep, "erasure-sweep-every", time.Minute, "how often each member carries out the approved erasures that are due")
	fs.DurationVar(&c.ExportExpiry, "export-expires-after", patient.DefaultExportExpiry, "how long an export's download link works")
	fs.DurationVar(&c.CheckInOpens, "check-in-opens", calendar.DefaultCheckInOpens, "an appointment can be checked in from this long before its start")
	fs.StringVar(&c.BlobDir, "blob-dir", envOr("CAREGRID_BLOB_DIR", ""), "directory of the document store (sealed contents); every node needs the same one, e.g. a shared volume (default <data-dir>/blobs) (env CAREGRID_BLOB_DIR)")
	fs.StringVar(&c.S3.Endpoint, "blob-s3-endpoint", envOr("CAREGRID_BLOB_S3_ENDPOINT", ""), "keep documents in an S3-compatible service at this URL (https://host[:port]) instead of --blob-dir; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared credentials file or the IAM role (env CAREGRID_BLOB_S3_ENDPOINT)")
	fs.StringVar(&c.S3.Bucket, "blob-s3-bucket", envOr("CAREGRID_BLOB_S3_BUCKET", ""), "the bucket documents go to; it must exist (env CAREGRID_BLOB_S3_BUCKET)")
	fs.StringVar(&c.S3.Region, "blob-s3-region", envOr("CAREGRID_BLOB_S3_REGION", ""), "the bucket's region (env CAREGRID_BLOB_S3_REGION)")
	fs.BoolVar(&c.S3.PathStyle, "blob-s3-path-style", envOr("CAREGRID_BLOB_S3_PATH_STYLE", "") == "true", "address the bucket in the URL path, as most self-hosted stores want (env CAREGRID_BLOB_S3_PATH_STYLE=true)")
	fs.Int64Var(&c.DocumentMax, "document-max-bytes", edge.DefaultDocumentMaxBytes, "largest document upload, in bytes")
	fs.StringVar(&c.DocumentType, "document-types", strings.Join(edge.DefaultDocumentTypes, ","), "content types a document may have, as sniffed from its content")
	fs.DurationVar(&c.StoreTimeout, "document-store-timeout", edge.DefaultDocumentStoreTimeout, "bound on one read or write of a document's content in its store")
	fs.DurationVar(&c.ExpirySweep, "prescription-expiry-sweep", time.Minute, "how often each node expires prescriptions whose duration has ended")
	fs.DurationVar(&c.GrainTimeout, "grain-timeout", 5*time.Second, "bound on one grain request, retries included")
	fs.IntVar(&c.DBMaxConns, "db-max-conns", 32, "database connection pool size")
	fs.StringVar(&c.LogLevel, "log-level", envOr("CAREGRID_LOG_LEVEL", "info"), "debug, info, warn or error (env CAREGRID_LOG_LEVEL)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", envOr("CAREGRID_PPROF_ADDR", ""), "serve net/http/pprof on this loopback address (off when empty) (env CAREGRID_PPROF_ADDR)")
	fs.StringVar(&c.PublicURL, "public-url", envOr("CAREGRID_PUBLIC_URL", ""), "the URL clients reach this API at; the OpenID issuer is <public-url>/oidc (default http://<http-addr>; https unless on loopback) (env CAREGRID_PUBLIC_URL)")
	fs.StringVar(&c.MasterKey, "master-key-file", envOr("CAREGRID_MASTER_KEY_FILE", ""), "hex master key that seals secrets at rest; every node needs the same (default <data-dir>/master.key, created if missing) (env CAREGRID_MASTER_KEY_FILE)")
	fs.StringVar(&c.RedisURL, "redis-url", envOr("REDIS_URL", ""), "Redis for rate limits shared by every node; empty: per-process limits (env REDIS_URL)")
	fs.StringVar(&c.LimitAddress, "rate-limit-address", envOr("CAREGRID_RATE_LIMIT_ADDRESS", "500/s"), "API requests allowed per source address, N/s, N/m or N/h (bursts of 2N); 0: off (env CAREGRID_RATE_LIMIT_ADDRESS)")
	fs.StringVar(&c.LimitSubject, "rate-limit-subject", envOr("CAREGRID_RATE_LIMIT_SUBJECT", "50/s"), "API requests allowed per authenticated subject; 0: off (env CAREGRID_RATE_LIMIT_SUBJECT)")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "comma-separated web origins (https://app.example.org) whose pages may call the OpenID Provider from a browser; no other origin gets CORS headers")
	fs.StringVar(&c.Locale, "default-locale", envOr("CAREGRID_DEFAULT_LOCALE", "en"), "language of the login pages and mails when neither the application (ui_locales) nor the browser names one: en, ro or ru (env CAREGRID_DEFAULT_LOCALE)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", envOr("CAREGRID_SMTP_ADDR", ""), "SMTP server (host:port) for password-reset and sign-up links; STARTTLS when offered; empty: no mail (env CAREGRID_SMTP_ADDR)")
	fs.StringVar(&c.SMTPFrom, "smtp-from", envOr("CAREGRID_SMTP_FROM", "caregrid <no-reply@localhost>"), "sender of those mails (env CAREGRID_SMTP_FROM)")
	fs.StringVar(&c.SMTPUser, "smtp-username", envOr("CAREGRID_SMTP_USERNAME", ""), "SMTP user; the password comes from CAREGRID_SMTP_PASSWORD only")
	fs.StringVar(&c.SMPPAddr, "smpp-addr", envOr("CAREGRID_SMPP_ADDR", ""), "SMS gateway (SMPP 3.4, host:port) for SMS notifications; empty: no SMS (env CAREGRID_SMPP_ADDR)")
	fs.StringVar(&c.SMPPSystemID, "smpp-system-id", envOr("CAREGRID_SMPP_SYSTEM_ID", ""), "SMPP system_id; the password comes from CAREGRID_SMPP_PASSWORD only")
	fs.StringVar(&c.SMPPSource, "smpp-source", envOr("CAREGRID_SMPP_SOURCE", "caregrid"), "the sender SMS show: a name (11 letters at most) or a number (env CAREGRID_SMPP_SOURCE)")
	fs.StringVar(&c.PushContact, "push-contact", envOr("CAREGRID_PUSH_CONTACT", "mailto:no-reply@localhost"), "the contact push services may use about this server's messages (VAPID sub; env CAREGRID_PUSH_CONTACT)")
	fs.StringVar(&c.Templates, "notification-templates", envOr("CAREGRID_NOTIFICATION_TEMPLATES", ""), "directory whose <lang>/<event>.tmpl and layout.html replace the built-in notification templates (env CAREGRID_NOTIFICATION_TEMPLATES)")
	fs.StringVar(&c.Reminders, "reminders", envOr("CAREGRID_REMINDERS", "24h,2h"), "when patients are reminded before an appointment, for clinics that set no times of their own (env CAREGRID_REMINDERS)")
	fs.IntVar(&c.NotifyRetries, "notification-attempts", 8, "tries a notification gets before it is dead (backoff from 10 s doubling to 1 h)")
	fs.DurationVar(&c.NotifyLease, "notification-lease", time.Minute, "how long a member holds a notification it is sending; one left by a member that died is sent again after it")
	fs.StringVar(&c.External, "external-issuers", envOr("CAREGRID_EXTERNAL_ISSUERS", ""), "JSON file of external identity providers whose access tokens are accepted (see README) (env CAREGRID_EXTERNAL_ISSUERS)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("serve: unexpected arguments %v", fs.Args())
	}
	for _, l := range []string{c.LimitAddress, c.LimitSubject} {
		if _, err := edge.ParseLimit(l); err != nil {
			return c, fmt.Errorf("serve: %w", err)
		}
	}
	if _, err := parseReminders(c.Reminders); err != nil {
		return c, fmt.Errorf("serve: %w", err)
	}
	if c.NotifyLease < 2*time.Second {
		return c, errors.New("serve: --notification-lease: at least 2s (a send may take half of it)")
	}
	if c.NotifyRetries < 1 || c.NotifyRetries > 30 {
		return c, errors.New("serve: --notification-attempts: 1 to 30")
	}
	if c.BlobDir == "" {
		c.BlobDir = filepath.Join(c.DataDir, "blobs")
	}
	if c.Provider == "" {
		c.Provider = "single"
		if c.ClusterPeers != "" {
			c.Provider = "peers"
		}
	}
	switch {
	case c.Provider != "single" && c.Provider != "peers" && c.Provider != "consul":
		return c, fmt.Errorf("serve: --cluster-provider %q: single, peers or consul", c.Provider)
	case (c.Provider == "peers") != (c.ClusterPeers != ""):
		return c, errors.New("serve: --cluster-peers goes with --cluster-provider peers")
	case c.Role != "member" && c.Role != "edge":
		return c, fmt.Errorf("serve: --role %q: member or edge", c.Role)
	case c.Role == "edge" && c.Provider == "single":
		return c, errors.New("serve: --role edge needs a way to find the members: --cluster-peers or --cluster-provider consul")
	case c.Role == "member" && c.Provider == "peers" && c.ClusterPort == 0:
		return c, errors.New("serve: --cluster-peers needs a fixed --cluster-port (the peers list names it)")
	case c.Provider != "single" && c.clusterTLS() == nil:
		// Remoting is never plaintext; a single node makes its own (see serve).
		return c, errors.New("serve: members talk over mutual TLS only: give --cluster-tls-ca, --cluster-tls-cert and --cluster-tls-key (caregrid dev-certs makes a development set)")
	}
	if _, ok := locale.Parse(c.Locale); !ok {
		return c, fmt.Errorf("serve: --default-locale %q: en, ro or ru", c.Locale)
	}
	for _, o := range corsOrigins(c.CORSOrigins) {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return c, fmt.Errorf("serve: --cors-origins: %q is not an origin such as https://app.example.org", o)
		}
	}
	if (c.S3.Endpoint == "") != (c.S3.Bucket == "") {
		return c, errors.New("serve: --blob-s3-endpoint and --blob-s3-bucket go together")
	}
	if c.MasterKey == "" {
		c.MasterKey = filepath.Join(c.DataDir, "master.key")
	}
	if c.DevAuthKey == "" {
		c.DevAuthKey = filepath.Join(c.DataDir, "dev-auth.key")
	}
	return c, nil
}

func serveCmd(ctx context.Context, args []string) error {
	cfg, err := serveFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("serve: --log-level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	// proto.actor logs every request at info: keep it at warnings and above.
	actorLogger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)})).With("component", "protoactor")
	return serve(ctx, cfg, logger, actorLogger)
}

func serve(ctx context.Context, cfg serveConfig, logger, actorLogger *slog.Logger) error {
	if cfg.PprofAddr != "" {
		if err := servePprof(cfg.PprofAddr, logger); err != nil {
			return err
		}
	}
	if cfg.OTLPEndpoint != "" {
		host, _ := os.Hostname()
		stopTracing, err := tracing.Setup(ctx, tracing.Config{Endpoint: cfg.OTLPEndpoint, Service: "caregrid", Instance: host + " " + cfg.HTTPAddr, Sample: cfg.TraceSample})
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = stopTracing(sctx) // flushes the last spans
		}()
		persistence.Traced.Store(true)
		logger.Info("tracing to an OTLP collector", "endpoint", cfg.OTLPEndpoint, "sample", cfg.TraceSample)
	}
	url := cfg.DatabaseURL
	migrate := cfg.Migrate
	if url == "" {
		logger.Info("DATABASE_URL is not set: starting the embedded PostgreSQL", "data_dir", cfg.DataDir)
		pg, err := embedpg.Start(ctx, cfg.DataDir)
		if err != nil {
			return fmt.Errorf("embedded database: %w", err)
		}
		defer func() {
			if err := pg.Stop(); err != nil {
				logger.Error("stop embedded database", "error", err)
			}
		}()
		url, migrate = pg.URL, true
	}
	db, err := persistence.Open(ctx, url, int32(cfg.DBMaxConns))
	if err != nil {
		return err
	}
	defer db.Close()
	if migrate {
		applied, err := db.Migrate(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		logger.Info("migrations applied", "applied", applied)
	} else if pending, err := db.Pending(ctx); err != nil {
		return err
	} else if len(pending) > 0 {
		return fmt.Errorf("the database lacks migrations %v: run 'caregrid migrate' or start with --migrate", pending)
	}

	retention, err := persistence.ParseRetention(cfg.Retention)
	if err != nil {
		return fmt.Errorf("--retention: %w", err)
	}
	master, err := seal.LoadKeyFile(cfg.MasterKey, true)
	if err != nil {
		return err
	}
	store, err := documentStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	var limiter ratelimit.Limiter = ratelimit.NewLocal(100_000)
	if cfg.RedisURL != "" {
		r, closeRedis, err := ratelimit.NewRedis(ctx, cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		defer func() { _ = closeRedis() }()
		limiter = r
	}
	var external []identity.ExternalIssuer
	if cfg.External != "" {
		if external, err = identity.LoadExternalIssuers(cfg.External); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	base := "http://" + ln.Addr().String()
	if cfg.PublicURL != "" {
		base = strings.TrimSuffix(cfg.PublicURL, "/")
	}
	var auth edge.Authenticator
	if cfg.DevAuth {
		if auth, err = devAuthenticator(cfg.DevAuthKey); err != nil {
			_ = ln.Close()
			return err
		}
		logger.Warn("development tokens accepted (--dev-auth): not for production", "key_file", cfg.DevAuthKey)
	}
	// Dropped by its peers while alive (silent past their heartbeat
	// detector, or Consul's TTL), this member's id is blocked for good: it drops its
	// activations and rejoins under a new id, in this process.
	dropped := make(chan struct{}, 1)
	onDropped := func() {
		select {
		case dropped <- struct{}{}:
		default:
		}
	}
	var consulCfg *cluster.Consul
	if cfg.Provider == "consul" {
		consulCfg = &cluster.Consul{Address: cfg.ConsulAddr, TTL: cfg.ConsulTTL}
	}
	remotingTLS := cfg.clusterTLS()
	if remotingTLS == nil { // a single node: its own throwaway CA, so its remoting is never plaintext
		ca, m, err := devcerts.Local(filepath.Join(cfg.DataDir, "cluster-tls"), cluster.PeerName, []string{cfg.ClusterHost})
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("this node's remoting certificate: %w", err)
		}
		remotingTLS = &cluster.TLS{CAFile: ca, CertFile: m.Cert, KeyFile: m.Key}
	}
	newNode := func() (*node, error) {
		return startNode(ctx, db, nodeConfig{
			ClusterName: cfg.ClusterName, ClusterHost: cfg.ClusterHost, ClusterPort: cfg.ClusterPort, ClusterTLS: remotingTLS,
			ClusterPeers: peerList(cfg.ClusterPeers), Consul: consulCfg, EdgeOnly: cfg.Role == "edge",
			GrainIdle: cfg.GrainIdle, GrainTimeout: cfg.GrainTimeout,
			CareWindow: cfg.CareWindow, CheckInOpens: cfg.CheckInOpens, AuditCheckpointEvery: cfg.AuditCheckpointEvery, AuditCheckEvery: cfg.AuditCheckEvery, Tracing: cfg.OTLPEndpoint != "",
			Retention: retention, RetentionSweep: cfg.RetentionSweep, ErasureSweep: cfg.ErasureSweep, ExportExpiry: cfg.ExportExpiry, Auth: auth, Logger: logger, ActorLogger: actorLogger, HTTPS: strings.HasPrefix(base, "https://"),
			RateLimits: rateLimits(cfg, limiter), ExternalIssuers: external, Master: master, ExpirySweep: cfg.ExpirySweep,
			Documents: &edge.Documents{Store: store, MaxBytes: cfg.DocumentMax, Types: strings.Split(cfg.DocumentType, ","),
				StoreTimeout: cfg.StoreTimeout},
			Identity:  identityConfig(cfg, db, master, base, limiter, logger),
			Notify:    notifyConfigOf(cfg, base, logger),
			OnDropped: onDropped,
		})
	}
	n, err := newNode()
	if err != nil {
		_ = ln.Close()
		return err
	}
	logger.Info("caregrid is serving", "api", base+"/v1/", "openapi", base+"/openapi.json", "issuer", base+identity.PathPrefix,
		"ready", base+"/readyz", "metrics", base+"/metrics", "cluster_member", n.member.Address())
	if cfg.DevAuth {
		fmt.Fprintf(os.Stderr, "\ncaregrid is serving on %s\n  OpenAPI: %s/openapi.json\n  token:   ./bin/caregrid dev-token --role receptionist --sub desk-1\n\n", base, base)
	}
	for {
		errc := make(chan error, 1)
		go func() { errc <- n.edge.App().Listener(ln) }()
		select {
		case err := <-errc:
			_ = n.stop(false)
			return err
		case <-ctx.Done():
			logger.Info("stopping: draining HTTP, leaving the cluster")
			return n.stop(true)
		case <-dropped:
		}
		// Its peers dropped this member: every activation it holds may
		// have a successor elsewhere (their fences refuse its writes), so
		// all of them go, with the member id; the node starts afresh on
		// the same addresses under a new id. The HTTP listener closes
		// meanwhile (clients retry on another edge).
		old, addr := n.member.System.ID, ln.Addr().String()
		logger.Warn("rejoining the cluster under a new member id: this member's activations are dropped", "member", old)
		_ = n.stop(false)
		<-errc
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("rejoin: listen %s: %w", addr, err)
		}
		select {
		case <-dropped: // what the old member said as it went
		default:
		}
		if n, err = newNode(); err != nil {
			_ = ln.Close()
			return fmt.Errorf("rejoin: %w", err)
		}
		rejoins.Add(1)
		logger.Warn("rejoined the cluster", "member", n.member.System.ID, "was", old)
	}
}

// rejoins counts the times this process rejoined its cluster under a new
// member id (caregrid_cluster_rejoins_total).
var rejoins atomic.Int64

func migrateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	url := fs.String("database-url", envOr("DATABASE_URL", ""), "database to migrate (env DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("migrate: set DATABASE_URL or --database-url (the embedded database migrates itself at start)")
	}
	db, err := persistence.Open(ctx, *url, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Println("the database is up to date")
	}
	for _, m := range applied {
		fmt.Println("applied", m)
	}
	return nil
}

// servePprof exposes the Go profiler on a loopback address, for operators.
func servePprof(addr string, logger *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("serve: --pprof-addr %q must be a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	go func() {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		logger.Info("pprof serving", "addr", ln.Addr().String(), "error", srv.Serve(ln))
	}()
	return nil
}

func rateLimits(cfg serveConfig, limiter ratelimit.Limiter) *edge.RateLimits {
	addr, _ := edge.ParseLimit(cfg.LimitAddress) // checked by serveFlags
	sub, _ := edge.ParseLimit(cfg.LimitSubject)
	return &edge.RateLimits{Limiter: limiter, PerAddress: addr, PerSubject: sub}
}

// identityConfig configures the embedded OpenID Provider of a node whose
// public base URL is base.
func identityConfig(cfg serveConfig, db *persistence.DB, master *seal.Key, base string, limiter ratelimit.Limiter, logger *slog.Logger) *identity.Config {
	def, _ := locale.Parse(cfg.Locale) // checked in parse
	return &identity.Config{DB: db, Seal: master, Issuer: base + identity.PathPrefix, Limiter: limiter, Logger: logger,
		Mailer: mailer(cfg, logger), DefaultLocale: def, CORSOrigins: corsOrigins(cfg.CORSOrigins)}
}

func corsOrigins(list string) []string {
	var out []string
	for _, o := range strings.Split(list, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// mailer is the login pages' mail on a development node without SMTP: the
// log (the links then show in the node's log). With SMTP the node queues
// account mail with the notifications (startNode); without either, none.
func mailer(cfg serveConfig, logger *slog.Logger) identity.Mailer {
	if cfg.SMTPAddr == "" && cfg.DevAuth {
		logger.Warn("no SMTP server (--smtp-addr): reset and sign-up links are written to this log (development only)")
		return identity.LogMailer{Logger: logger}
	}
	return nil
}

// notifyConfigOf is the notification channels the flags configure: email
// over SMTP, SMS over SMPP, Web Push always (it reaches only browsers that
// subscribed). A development node without SMTP or SMPP writes those
// messages to its log.
func notifyConfigOf(cfg serveConfig, base string, logger *slog.Logger) *notifyConfig {
	reminders, _ := parseReminders(cfg.Reminders) // checked by serveFlags
	def, _ := locale.Parse(cfg.Locale)
	lang, _ := def.Base()
	nc := &notifyConfig{Language: lang.String(), PortalURL: base, Templates: cfg.Templates, Reminders: reminders,
		Retry: notify.Retry{Attempts: cfg.NotifyRetries}, PushContact: cfg.PushContact, Push: true, Lease: cfg.NotifyLease}
	switch {
	case cfg.SMTPAddr != "":
		nc.Email = notify.Email{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUser, Password: os.Getenv("CAREGRID_SMTP_PASSWORD")}
	case cfg.DevAuth:
		nc.Email = notify.LogSender{Channel: "email", Logger: logger}
	}
	switch {
	case cfg.SMPPAddr != "":
		nc.SMS = &notify.SMS{Addr: cfg.SMPPAddr, SystemID: cfg.SMPPSystemID, Password: os.Getenv("CAREGRID_SMPP_PASSWORD"),
			Source: cfg.SMPPSource, Logger: logger}
	case cfg.DevAuth:
		nc.SMS = notify.LogSender{Channel: "sms", Logger: logger}
	}
	return nc
}

// parseReminders reads "24h,2h" as minutes before an appointment.
func parseReminders(s string) ([]int32, error) {
	var out []int32
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d < time.Minute || d > 14*24*time.Hour || d%time.Minute != 0 {
			return nil, fmt.Errorf("--reminders: %q is not a whole number of minutes up to two weeks (24h, 2h, 30m)", part)
		}
		out = append(out, int32(d/time.Minute))
	}
	if len(out) > edge.MaxReminders {
		return nil, fmt.Errorf("--reminders: at most %d", edge.MaxReminders)
	}
	return out, nil
}

// documentStore is the S3-compatible store when one is configured (and
// reachable, with the bucket there), else the local directory.
func documentStore(ctx context.Context, cfg serveConfig, logger *slog.Logger) (blob.Store, error) {
	if cfg.S3.Endpoint == "" {
		logger.Info("documents kept in a local directory", "blob_dir", cfg.BlobDir)
		return blob.Dir{Root: cfg.BlobDir}, nil
	}
	s3, err := blob.NewS3(cfg.S3)
	if err != nil {
		return nil, err
	}
	checkCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s3.Check(checkCtx); err != nil {
		return nil, err
	}
	logger.Info("documents kept in S3", "endpoint", cfg.S3.Endpoint, "bucket", cfg.S3.Bucket)
	return s3, nil
}

// clusterTLS is the remoting's mutual TLS, or nil when no file is given
// (the cluster package refuses a partial set).
func (c serveConfig) clusterTLS() *cluster.TLS {
	if c.ClusterTLS == (cluster.TLS{}) {
		return nil
	}
	return &c.ClusterTLS
}

// peerList splits --cluster-peers.
func peerList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
