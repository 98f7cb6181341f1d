package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/edge/identity"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/embedpg"
	"github.com/caregrid/caregrid/search"
	"github.com/google/uuid"
)

const adminUsage = `usage: caregrid admin <command> [flags]

commands:
  bootstrap       create the first admin account and print its one-time password
  account create  create an account: --username U --role R [--id ID] (prints a one-time password)
  client create   register an OAuth client: --name N --kind service --role R (prints id and secret),
                  or --kind public|confidential --redirect-uri URI ...
  reindex         rebuild the patient search read model from the patients table (a progress bar
                  on stderr); safe while nodes run: the relay's newer versions are never overwritten
  erasures        print the erasures carried out (JSON, as GET /v1/erasure-requests?status=erased
                  pages it): keep it beside the backups
  reapply-erasures --file F [--blob-dir D]
                  after restoring a backup, erase again every patient in F (the output of
                  'erasures', or of the API, taken before the restore) that the backup brought back;
                  run it before the nodes start on the restored database (a running grain fenced
                  out by it writes nothing more, but serves what it holds until it passivates)
  notifications [--status S] [--retry ID] [--retry-dead]
                  list notifications in a state (dead by default; pending, sending, sent,
                  delivered, skipped, all), oldest first, as GET /v1/notifications does; --retry
                  sends a dead one again from its first try, --retry-dead every dead one
                  (audited, as the API's retry)

Every command takes --database-url (env DATABASE_URL); without it, the
embedded database under --data-dir (a running 'caregrid serve's, or one
the command starts).
`

func adminCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, adminUsage)
		return flag.ErrHelp
	}
	switch {
	case args[0] == "bootstrap":
		return withAdminDB(ctx, "admin bootstrap", args[1:], nil, func(db *persistence.DB) error {
			return bootstrap(ctx, db, os.Stdout)
		})
	case args[0] == "account" && len(args) > 1 && args[1] == "create":
		var a accountFlags
		return withAdminDB(ctx, "admin account create", args[2:], a.register, func(db *persistence.DB) error {
			return createAccount(ctx, db, a, os.Stdout)
		})
	case args[0] == "reindex":
		return withAdminDB(ctx, "admin reindex", args[1:], nil, func(db *persistence.DB) error {
			n, err := reindex(ctx, db, os.Stderr)
			if err == nil {
				fmt.Printf("reindexed %d patients\n", n)
			}
			return err
		})
	case args[0] == "erasures":
		return withAdminDB(ctx, "admin erasures", args[1:], nil, func(db *persistence.DB) error {
			return printErasures(ctx, db, os.Stdout)
		})
	case args[0] == "reapply-erasures":
		var file, blobDir string
		return withAdminDB(ctx, "admin reapply-erasures", args[1:], func(fs *flag.FlagSet) {
			fs.StringVar(&file, "file", "", "the erasures to apply again (JSON: the output of 'caregrid admin erasures')")
			fs.StringVar(&blobDir, "blob-dir", envOr("CAREGRID_BLOB_DIR", ""), "the document store's directory, to delete the erased patients' blobs (empty: leave them; they are unreadable)")
		}, func(db *persistence.DB) error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			var list erasureList
			if err := json.Unmarshal(b, &list); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			var store blob.Store
			if blobDir != "" {
				store = blob.Dir{Root: blobDir}
			}
			_, err = reapplyErasures(ctx, db, list.ErasureRequests, audit.Recorder{}, store, os.Stdout)
			return err
		})
	case args[0] == "notifications":
		var status, retry string
		var retryDead bool
		return withAdminDB(ctx, "admin notifications", args[1:], func(fs *flag.FlagSet) {
			fs.StringVar(&status, "status", persistence.NotificationDead, "the state to list: pending, sending, sent, delivered, dead, skipped or all")
			fs.StringVar(&retry, "retry", "", "send this dead notification again")
			fs.BoolVar(&retryDead, "retry-dead", false, "send every dead notification again")
		}, func(db *persistence.DB) error {
			return adminNotifications(ctx, db, status, retry, retryDead, audit.Recorder{}, os.Stdout)
		})
	case args[0] == "client" && len(args) > 1 && args[1] == "create":
		var c clientFlags
		return withAdminDB(ctx, "admin client create", args[2:], c.register, func(db *persistence.DB) error {
			return createClient(ctx, db, c, os.Stdout)
		})
	}
	fmt.Fprint(os.Stderr, adminUsage)
	return fmt.Errorf("admin: unknown command %q", strings.Join(args, " "))
}

func withAdminDB(ctx context.Context, name string, args []string, register func(*flag.FlagSet), run func(*persistence.DB) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	url := fs.String("database-url", envOr("DATABASE_URL", ""), "database (env DATABASE_URL); empty: the embedded one under --data-dir")
	dataDir := fs.String("data-dir", envOr("CAREGRID_DATA_DIR", ".data"), "the embedded database's directory (env CAREGRID_DATA_DIR)")
	if register != nil {
		register(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		// A running 'caregrid serve' shares its server; otherwise this
		// command starts one for itself.
		pg, err := embedpg.Open(ctx, *dataDir)
		if err != nil {
			return fmt.Errorf("%s: embedded database: %w", name, err)
		}
		defer func() { _ = pg.Stop() }()
		*url = pg.URL
	}
	db, err := persistence.Open(ctx, *url, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	if pending, err := db.Pending(ctx); err != nil {
		return err
	} else if len(pending) > 0 {
		if _, err := db.Migrate(ctx); err != nil {
			return err
		}
	}
	return run(db)
}

// oneTimePassword is a random password the account must replace at its
// first login (the login pages ask for a new one).
func oneTimePassword() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// bootstrap creates the first admin. It refuses once any admin exists, so
// it cannot be used to take over a running system.
func bootstrap(ctx context.Context, db *persistence.DB, out io.Writer) error {
	n, err := db.CountAccounts(ctx, "admin")
	if err != nil {
		return err
	}
	if n > 0 {
		return errors.New("admin bootstrap: an admin account exists already; admins create further accounts")
	}
	pw := oneTimePassword()
	hash, err := identity.HashPassword(pw)
	if err != nil {
		return err
	}
	a := persistence.Account{ID: uuid.NewString(), Username: "admin", Role: "admin", PasswordHash: hash, MustChangePassword: true}
	if err := db.CreateAccount(ctx, a); err != nil {
		return err
	}
	fmt.Fprintf(out, "username: admin\none-time password: %s\nThe first sign-in asks for a new password and sets up an authenticator app.\n", pw)
	return nil
}

type accountFlags struct {
	username, role, id, email string
}

func (a *accountFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.username, "username", "", "login name")
	fs.StringVar(&a.role, "role", "", "patient, doctor, receptionist or admin")
	fs.StringVar(&a.id, "id", "", "account id; for a doctor or patient, the id of their record (default: a new id)")
	fs.StringVar(&a.email, "email", "", "email address")
}

func createAccount(ctx context.Context, db *persistence.DB, f accountFlags, out io.Writer) error {
	role, ok := messages.ParseRole(f.role)
	if !ok || role == messages.Role_ROLE_SERVICE || strings.TrimSpace(f.username) == "" {
		return errors.New("admin account create: --username and --role (patient, doctor, receptionist or admin) are required")
	}
	if (role == messages.Role_ROLE_DOCTOR || role == messages.Role_ROLE_PATIENT) && f.id == "" {
		return errors.New("admin account create: a doctor or patient account needs --id, the id of their record")
	}
	id := f.id
	if id == "" {
		id = uuid.NewString()
	} else if uuid.Validate(id) != nil {
		return errors.New("admin account create: --id must be a UUID")
	}
	if role == messages.Role_ROLE_DOCTOR || role == messages.Role_ROLE_PATIENT {
		// The account opens that record to its owner: it must be there.
		ok, err := db.RecordExists(ctx, role.Name(), strings.ToLower(id))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("admin account create: no %s record %s: register it first", role.Name(), id)
		}
	}
	pw := oneTimePassword()
	hash, err := identity.HashPassword(pw)
	if err != nil {
		return err
	}
	err = db.CreateAccount(ctx, persistence.Account{ID: strings.ToLower(id), Username: strings.TrimSpace(f.username), Email: f.email,
		Role: role.Name(), PasswordHash: hash, MustChangePassword: true})
	if errors.Is(err, persistence.ErrExists) {
		return errors.New("admin account create: the username or id is taken")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "account id: %s\nusername: %s\none-time password: %s\n", strings.ToLower(id), strings.TrimSpace(f.username), pw)
	return nil
}

type clientFlags struct {
	name, kind, role string
	redirects        stringList
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "name", "", "what the client is (shown in sessions and the audit trail)")
	fs.StringVar(&c.kind, "kind", "service", "service (client credentials), public (app with PKCE) or confidential (web app with a secret)")
	fs.StringVar(&c.role, "role", "", "service clients: the role their account is granted (service: a system such as a pharmacy, which reads and dispenses prescriptions)")
	fs.Var(&c.redirects, "redirect-uri", "public and confidential clients: an allowed redirect URI (repeat for more)")
}

func createClient(ctx context.Context, db *persistence.DB, f clientFlags, out io.Writer) error {
	if strings.TrimSpace(f.name) == "" {
		return errors.New("admin client create: --name is required")
	}
	c := persistence.Client{ID: uuid.NewString(), Name: strings.TrimSpace(f.name), Kind: f.kind, RedirectURIs: f.redirects}
	secret := ""
	var role messages.Role
	switch f.kind {
	case "service":
		var ok bool
		// A service client may also hold the service role: a system such
		// as a pharmacy, which reads and dispenses prescriptions only.
		role, ok = messages.ParseRole(f.role)
		if !ok {
			return errors.New("admin client create: a service client needs --role (service, patient, doctor, receptionist or admin)")
		}
		c.AccountID = uuid.NewString()
	case "public", "confidential":
		if len(f.redirects) == 0 {
			return errors.New("admin client create: a public or confidential client needs at least one --redirect-uri")
		}
	default:
		return errors.New("admin client create: --kind must be service, public or confidential")
	}
	if f.kind != "public" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = base64.RawURLEncoding.EncodeToString(b)
		h := sha256.Sum256([]byte(secret))
		c.SecretHash = h[:]
	}
	var err error
	if f.kind == "service" {
		err = db.CreateServiceClient(ctx, persistence.Account{ID: c.AccountID, Username: "service:" + c.ID, Role: role.Name()}, c)
	} else {
		err = db.CreateClient(ctx, c)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client id: %s\n", c.ID)
	if secret != "" {
		fmt.Fprintf(out, "client secret: %s\n(shown once: store it in the client's secret store)\n", secret)
	}
	return nil
}

// reindex rebuilds the search read model from the source table, in id
// order, a batch at a time, drawing its progress on out.
func reindex(ctx context.Context, db *persistence.DB, out io.Writer) (int, error) {
	total, err := db.CountPatients(ctx)
	if err != nil {
		return 0, err
	}
	bar := newProgress(out, "reindex", total)
	n, err := search.Reindex(ctx, db, bar.set)
	if err == nil {
		bar.finish()
	}
	return n, err
}

// progress is a one-line progress bar on a terminal (or a line per tenth
// on a log).
type progress struct {
	out       io.Writer
	name      string
	total     int
	lastTenth int
	started   time.Time
}

func newProgress(out io.Writer, name string, total int) *progress {
	return &progress{out: out, name: name, total: max(total, 1), lastTenth: -1, started: time.Now()}
}

func (p *progress) set(done int) {
	tenth := min(done*10/p.total, 10)
	if tenth == p.lastTenth {
		return
	}
	p.lastTenth = tenth
	fmt.Fprintf(p.out, "\r%s [%-10s] %3d%% %d/%d %s", p.name, strings.Repeat("#", tenth), done*100/p.total, done, p.total,
		time.Since(p.started).Round(time.Second))
}

func (p *progress) finish() {
	p.set(p.total)
	fmt.Fprintln(p.out)
}

// erasureList is the erasures as 'caregrid admin erasures' prints them and
// GET /v1/erasure-requests answers them.
type erasureList struct {
	ErasureRequests []erasedJSON `json:"erasure_requests"`
}

type erasedJSON struct {
	ID          string    `json:"id"`
	PatientID   string    `json:"patient_id"`
	State       string    `json:"state"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	ReviewedBy  string    `json:"reviewed_by,omitempty"`
	ErasedAt    time.Time `json:"erased_at,omitempty"`
}

// printErasures writes every erasure carried out, oldest first.
func printErasures(ctx context.Context, db *persistence.DB, out io.Writer) error {
	list := erasureList{ErasureRequests: []erasedJSON{}}
	var after time.Time
	afterID := ""
	for {
		page, err := db.ErasureRequests(ctx, persistence.ErasureErased, after, afterID, 500)
		if err != nil {
			return err
		}
		for _, e := range page {
			list.ErasureRequests = append(list.ErasureRequests, erasedJSON{ID: e.ID, PatientID: e.PatientID, State: e.State,
				RequestedBy: e.RequestedBy, RequestedAt: e.RequestedAt, ReviewedBy: e.ReviewedBy, ErasedAt: e.ErasedAt})
		}
		if len(page) < 500 {
			break
		}
		after, afterID = page[len(page)-1].RequestedAt, page[len(page)-1].ID
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

// reapplyErasures erases again the patients of list that the database
// holds (a restored backup brought them back), each through its grain's
// fence (persistence.ReapplyErasure), with an erase event in the audit
// trail; it returns how many it erased.
func reapplyErasures(ctx context.Context, db *persistence.DB, list []erasedJSON, rec audit.Recorder, blobs blob.Store, out io.Writer) (int, error) {
	by := &messages.Caller{Subject: "caregrid/admin-reapply-erasures", Role: messages.Role_ROLE_SERVICE}
	n := 0
	for _, j := range list {
		if j.State != "" && j.State != persistence.ErasureErased || !isUUID(j.ID) || !isUUID(j.PatientID) {
			continue
		}
		e := persistence.Erasure{ID: j.ID, PatientID: j.PatientID, RequestedBy: j.RequestedBy, RequestedAt: j.RequestedAt, ReviewedBy: j.ReviewedBy}
		ev := audit.Event(by, messages.AuditAction_AUDIT_ACTION_ERASE, "patient", e.PatientID, e.PatientID, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS,
			e.ID+" applied again after a restore", time.Now())
		proof, keys, erased, err := db.ReapplyErasure(ctx, "caregrid-admin", e, time.Now().UTC(), rec.Pending(ev))
		if err != nil {
			return n, fmt.Errorf("patient %s: %w", e.PatientID, err)
		}
		if !erased {
			continue
		}
		n++
		for _, k := range keys {
			if blobs != nil {
				if err := blobs.Delete(ctx, k); err != nil && !errors.Is(err, blob.ErrNotFound) {
					return n, fmt.Errorf("patient %s: blob: %w", e.PatientID, err)
				}
			}
		}
		if blobs != nil {
			if err := db.BlobsDeleted(ctx, e.ID, keys); err != nil {
				return n, err
			}
		}
		fmt.Fprintf(out, "patient %s erased again (erasure %s, key %s)\n", e.PatientID, e.ID, proof.DataKeySHA256)
	}
	fmt.Fprintf(out, "%d patients erased again\n", n)
	return n, nil
}

func isUUID(s string) bool { return len(s) == 36 && uuid.Validate(s) == nil }

// adminNotifications lists notifications in a state, or sends dead ones
// again (each retry audited like the API's, chained by the members'
// drain loop).
func adminNotifications(ctx context.Context, db *persistence.DB, status, retry string, retryDead bool, rec audit.Recorder, out io.Writer) error {
	states := []string{persistence.NotificationPending, persistence.NotificationSending, persistence.NotificationSent,
		persistence.NotificationDelivered, persistence.NotificationDead, persistence.NotificationSkipped}
	if status != "all" && !slices.Contains(states, status) {
		return fmt.Errorf("admin notifications: --status %q: one of %s or all", status, strings.Join(states, ", "))
	}
	if status == "all" {
		status = ""
	}
	by := &messages.Caller{Subject: "caregrid/admin-notifications", Role: messages.Role_ROLE_SERVICE}
	again := func(id string) error {
		ev := audit.Event(by, messages.AuditAction_AUDIT_ACTION_RETRY_NOTIFICATION, "notification", id, "", messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, "", time.Now())
		_, err := db.RetryNotification(persistence.WithAudit(ctx, rec.Pending(ev)), id, time.Now())
		if err == nil {
			fmt.Fprintf(out, "%s: pending again\n", id)
		}
		return err
	}
	switch {
	case retry != "":
		if err := again(retry); err != nil {
			return fmt.Errorf("admin notifications: %s: %w", retry, err)
		}
		return nil
	case retryDead:
		for {
			dead, err := db.NotificationsByState(ctx, persistence.NotificationDead, time.Time{}, "", 500)
			if err != nil || len(dead) == 0 {
				return err
			}
			for _, n := range dead {
				if err := again(n.ID); err != nil && !errors.Is(err, persistence.ErrWrongState) {
					return err
				}
			}
		}
	}
	list := struct {
		Notifications []notificationLine `json:"notifications"`
	}{Notifications: []notificationLine{}}
	var after time.Time
	afterID := ""
	for {
		page, err := db.NotificationsByState(ctx, status, after, afterID, 500)
		if err != nil {
			return err
		}
		for _, n := range page {
			list.Notifications = append(list.Notifications, notificationLine{ID: n.ID, PatientID: n.PatientID, Event: n.Event,
				Channel: n.Channel, State: n.State, Attempts: n.Attempts, CreatedAt: n.CreatedAt, SentAt: n.SentAt, LastError: n.LastError})
		}
		if len(page) < 500 {
			break
		}
		after, afterID = page[len(page)-1].CreatedAt, page[len(page)-1].ID
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

// notificationLine is one notification as 'caregrid admin notifications' prints it.
type notificationLine struct {
	ID        string     `json:"id"`
	PatientID string     `json:"patient_id,omitempty"`
	Event     string     `json:"event"`
	Channel   string     `json:"channel"`
	State     string     `json:"state"`
	Attempts  int        `json:"attempts"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}
