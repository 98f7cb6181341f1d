package patient

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/access"
	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/actors/prescription"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultExportExpiry is how long an export's download link works.
const DefaultExportExpiry = 24 * time.Hour

// ExportLanguages are the languages an export's index is written in.
var ExportLanguages = []string{"en", "ro", "ru"}

// ExportOf is the protobuf form of an export.
func ExportOf(e persistence.Export) *messages.Export {
	return &messages.Export{Id: e.ID, PatientId: e.PatientID, State: e.State, ProgressPercent: int32(e.Progress),
		RequestedBy: e.RequestedBy, RequestedAt: timestamppb.New(e.RequestedAt), ExpiresAt: timestamppb.New(e.ExpiresAt)}
}

// StartExport files an export of everything held about the patient (GDPR
// art. 15 and 20): the patient, or a receptionist for them. A member builds
// it in the background (Exporter); the edge hands the caller the download
// link, whose token's hash the request carries.
func (g *Grain) StartExport(req *messages.StartExportRequest, ctx actorcluster.GrainContext) (*messages.ExportReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_EXPORT
	if d := access.ExerciseDataRights(c, g.id); !d.Allowed {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrPermissionDenied("%s", d.Reason))
	}
	var errs validate.Errors
	if !validate.ID(req.GetExportId()) {
		errs.Add("export_id", "must be a UUID")
	}
	if len(req.GetTokenSha256()) != 32 {
		errs.Add("token_sha256", "must be a SHA-256")
	}
	lang := req.GetLanguage()
	if lang == "" {
		lang = "en"
	}
	if !contains(ExportLanguages, lang) {
		errs.Add("language", "must be ro, ru or en")
	}
	if err := errs.Err(); err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	if err := g.load(); err != nil {
		return nil, g.storeError(ctx, "load", err)
	}
	if g.rec == nil {
		return nil, g.notFound(ctx, c, action)
	}
	now := g.deps.Now().UTC()
	expiry := g.deps.ExportExpiry
	if expiry <= 0 {
		expiry = DefaultExportExpiry
	}
	e := persistence.Export{ID: req.GetExportId(), PatientID: g.id, RequestedBy: c.GetSubject(), RequestedAt: now,
		Language: lang, State: persistence.ExportQueued, TokenHash: req.GetTokenSha256(), ExpiresAt: now.Add(expiry)}
	sctx, cancel := g.storeCtx()
	defer cancel()
	switch err := g.deps.DB.QueueExport(g.written(sctx, c, action, e.ID), g.fence, e); {
	case errors.Is(err, persistence.ErrExists):
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrWrongState("an export of this record is being made; wait for it"))
	case err != nil:
		return nil, g.storeError(ctx, "export", err)
	}
	g.chained(ctx)
	return &messages.ExportReply{Export: ExportOf(e)}, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// epoch is "from the newest" to the paged lists (their cursor's zero).
var epoch = time.Unix(0, 0).UTC()

// ExportFile is one file of an export, as its index lists it.
type ExportFile struct {
	// Name is the path in the archive; Kind what it holds ("patient",
	// "visits", ... "document"); Count how many records it holds (a
	// document: 1).
	Name, Kind string
	Count      int
}

// Exporter builds the exports the patient grains file: every member runs
// one; they share the queue through the database (persistence.ClaimExport,
// a lease), so an export whose builder died is taken up by another.
type Exporter struct {
	DB     *persistence.DB
	Master *seal.Key
	Blobs  blob.Store
	// Owner names this member in the lease.
	Owner string
	// Index writes the archive's README in a language (edge.ExportIndex).
	Index func(lang string, patientID string, at time.Time, files []ExportFile) []byte
	// Every is the pause between looks at the queue (0: 2 s).
	Every  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// exportLease is how long a claimed build may go without progress before
// another member takes it.
const exportLease = 2 * time.Minute

// Run builds exports until ctx ends.
func (x Exporter) Run(ctx context.Context) {
	if x.Every <= 0 {
		x.Every = 2 * time.Second
	}
	t := time.NewTicker(x.Every)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			built, err := x.Once(ctx)
			if err != nil {
				x.logger().Warn("patient export failed", "error", err)
			}
			if !built {
				break
			}
		}
		x.clear(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (x Exporter) logger() *slog.Logger {
	if x.Logger == nil {
		return slog.Default()
	}
	return x.Logger
}

func (x Exporter) now() time.Time {
	if x.Now == nil {
		return time.Now().UTC()
	}
	return x.Now().UTC()
}

// clear deletes the blobs of downloaded, failed and expired exports.
func (x Exporter) clear(ctx context.Context) {
	es, err := x.DB.ExportsToClear(ctx, x.now(), 100)
	if err != nil {
		x.logger().Warn("exports to clear: cannot list", "error", err)
		return
	}
	for _, e := range es {
		if err := x.Blobs.Delete(ctx, e.BlobKey); err != nil && !errors.Is(err, blob.ErrNotFound) {
			x.logger().Warn("export blob not deleted; the next pass retries", "export", e.ID, "error", err)
			continue
		}
		if err := x.DB.ExportCleared(ctx, e.ID); err != nil {
			x.logger().Warn("export blob deleted but not struck off", "export", e.ID, "error", err)
		}
	}
}

// ExportKeyAAD binds an export's sealed key to its export.
func ExportKeyAAD(id string) string { return "export/" + id + "/key" }

// ExportAAD binds an export's sealed archive to its export.
func ExportAAD(id string) string { return "export/" + id }

// Once builds the oldest waiting export, if any; built reports whether
// there was one.
func (x Exporter) Once(ctx context.Context) (built bool, err error) {
	e, err := x.DB.ClaimExport(ctx, x.Owner, x.now(), exportLease)
	if errors.Is(err, persistence.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := x.build(ctx, e); err != nil {
		// The reason is for operators (logs); the export says only that it failed.
		if ferr := x.DB.FailExport(ctx, e.ID, x.Owner, "the export could not be made; ask for a new one"); ferr != nil {
			x.logger().Warn("export failure not recorded", "export", e.ID, "error", ferr)
		}
		return true, fmt.Errorf("export %s: %w", e.ID, err)
	}
	return true, nil
}

// build writes the archive through a sealing stream into a temporary file
// (no plain byte on disk), then into the blob store.
func (x Exporter) build(ctx context.Context, e persistence.Export) error {
	k, err := x.DB.DataKey(ctx, x.Master, e.PatientID)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "caregrid-export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	fileKey := make([]byte, seal.KeySize)
	if _, err := rand.Read(fileKey); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	sealed := make(chan error, 1)
	go func() {
		_, err := seal.SealStream(tmp, pr, fileKey, ExportAAD(e.ID))
		pr.CloseWithError(err)
		sealed <- err
	}()
	err = x.writeArchive(ctx, pw, e, k)
	pw.CloseWithError(err)
	if serr := <-sealed; err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	blobKey := "exports/" + e.ID
	if err := x.Blobs.Put(ctx, blobKey, tmp, size); err != nil {
		return err
	}
	if err := x.DB.FinishExport(ctx, e.ID, x.Owner, blobKey, x.Master.Seal(fileKey, ExportKeyAAD(e.ID)), size); err != nil {
		_ = x.Blobs.Delete(ctx, blobKey) // another member took it over
		return err
	}
	return nil
}

// writeArchive writes the ZIP: a JSON file per kind of record, the
// documents' contents, the access log with what verifies it, and the
// index. Progress is recorded after each part.
func (x Exporter) writeArchive(ctx context.Context, w io.Writer, e persistence.Export, k *seal.Key) error {
	z := zip.NewWriter(w)
	var files []ExportFile
	add := func(name, kind string, count int, v any) error {
		b, err := exportJSON(v)
		if err != nil {
			return err
		}
		f, err := z.Create(name)
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			return err
		}
		files = append(files, ExportFile{Name: name, Kind: kind, Count: count})
		return nil
	}
	parts := []func() error{
		func() error {
			sp, err := x.DB.PatientRecordRow(ctx, e.PatientID)
			if err != nil {
				return err
			}
			if err := persistence.OpenClinical(k, sp); err != nil {
				return err
			}
			return add("patient.json", "patient", 1, sp.Record)
		},
		func() error {
			h, err := x.DB.ClinicalHistory(ctx, k, e.PatientID, 0, 1<<30)
			if err != nil {
				return err
			}
			changes := make([]proto.Message, 0, len(h))
			for _, c := range h {
				blood, _ := messages.ParseBloodType(c.BloodType)
				changes = append(changes, &messages.ClinicalChange{Version: c.Version, ChangedAt: timestamppb.New(c.ChangedAt),
					ChangedBy: c.ChangedBy, BloodType: blood, Allergies: c.Allergies})
			}
			return add("clinical-history.json", "clinical-history", len(changes), changes)
		},
		func() error {
			stored, err := x.DB.Visits(ctx, e.PatientID, epoch, "", 1<<30)
			if err != nil {
				return err
			}
			vs := make([]proto.Message, 0, len(stored))
			for _, s := range stored {
				v, err := openVisit(k, s)
				if err != nil {
					return err
				}
				vs = append(vs, v)
			}
			return add("visits.json", "visits", len(vs), vs)
		},
		func() error {
			vs, err := x.DB.Vaccinations(ctx, k, e.PatientID, "", "", 1<<30)
			if err != nil {
				return err
			}
			return add("vaccinations.json", "vaccinations", len(vs), vs)
		},
		func() error {
			stored, err := x.DB.Prescriptions(ctx, e.PatientID, "", epoch, "", 1<<30)
			if err != nil {
				return err
			}
			ps := make([]proto.Message, 0, len(stored))
			for _, s := range stored {
				p, err := prescription.Open(k, s)
				if err != nil {
					return err
				}
				ps = append(ps, p)
			}
			return add("prescriptions.json", "prescriptions", len(ps), ps)
		},
		func() error {
			as, err := x.DB.AllPatientAppointments(ctx, e.PatientID)
			if err != nil {
				return err
			}
			return add("appointments.json", "appointments", len(as), as)
		},
		func() error { return x.documents(ctx, z, e, k, add, &files) },
		func() error {
			team, err := x.DB.CareTeam(ctx, e.PatientID)
			if err != nil {
				return err
			}
			rs, err := x.DB.Restrictions(ctx, e.PatientID)
			if err != nil {
				return err
			}
			em, err := x.DB.PatientEmergencyAccesses(ctx, e.PatientID)
			if err != nil {
				return err
			}
			er, err := x.DB.PatientErasures(ctx, e.PatientID)
			if err != nil {
				return err
			}
			c, err := consentsOf(k, team, rs, em, er)
			if err != nil {
				return err
			}
			return add("consents.json", "consents", len(team)+len(rs)+len(em)+len(er), c)
		},
		func() error {
			rows, err := x.DB.PatientAuditRows(ctx, e.PatientID)
			if err != nil {
				return err
			}
			last := map[int32]int64{}
			for _, r := range rows {
				last[r.Shard] = max(last[r.Shard], r.Seq)
			}
			var cps []persistence.Checkpoint
			for shard, seq := range last {
				c, err := x.DB.CheckpointsAfter(ctx, shard, seq)
				if err != nil {
					return err
				}
				cps = append(cps, c...)
			}
			keys, err := x.DB.AuditKeys(ctx)
			if err != nil {
				return err
			}
			return add("access-log.json", "access-log", len(rows), audit.NewExportedLog(rows, cps, keys))
		},
	}
	for i, part := range parts {
		if err := part(); err != nil {
			return err
		}
		if err := x.DB.ExportProgress(ctx, e.ID, x.Owner, 100*(i+1)/(len(parts)+1), x.now().Add(exportLease)); err != nil {
			return fmt.Errorf("progress: %w", err)
		}
	}
	if x.Index != nil {
		f, err := z.Create("README.txt")
		if err != nil {
			return err
		}
		if _, err := f.Write(x.Index(e.Language, e.PatientID, x.now(), files)); err != nil {
			return err
		}
	}
	return z.Close()
}

// documents writes documents.json and each document's content, opened.
func (x Exporter) documents(ctx context.Context, z *zip.Writer, e persistence.Export, k *seal.Key,
	add func(name, kind string, count int, v any) error, files *[]ExportFile) error {
	ds, err := x.DB.Documents(ctx, e.PatientID, epoch, "", 1<<30)
	if err != nil {
		return err
	}
	meta := make([]proto.Message, 0, len(ds))
	for _, d := range ds {
		meta = append(meta, d.Document)
	}
	if err := add("documents.json", "documents", len(ds), meta); err != nil {
		return err
	}
	for _, d := range ds {
		key, err := k.Open(d.KeyWrapped, documentKeyAAD(d.Document.Id))
		if err != nil {
			return err
		}
		stored, err := x.Blobs.Get(ctx, d.BlobKey)
		if err != nil {
			return err
		}
		content, err := OpenDocumentContent(stored, key, d.Document)
		if err != nil {
			stored.Close()
			return err
		}
		name := path.Join("documents", d.Document.Id+extensionOf(d.Document.ContentType))
		f, err := z.Create(name)
		if err == nil {
			_, err = io.Copy(f, content)
		}
		stored.Close()
		if err != nil {
			return err
		}
		*files = append(*files, ExportFile{Name: name, Kind: "document", Count: 1})
	}
	return nil
}

// consents is consents.json: who may read the record and what the patient
// asked for, in the API's field names.
type consents struct {
	CareTeam          []careTeamJSON    `json:"care_team"`
	Restrictions      []restrictionJSON `json:"restrictions"`
	EmergencyAccesses []emergencyJSON   `json:"emergency_accesses"`
	Erasures          []json.RawMessage `json:"erasure_requests"`
}

type careTeamJSON struct {
	DoctorID string    `json:"doctor_id"`
	Since    time.Time `json:"since"`
	AddedBy  string    `json:"added_by"`
}

type restrictionJSON struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	TargetID  string     `json:"target_id"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	LiftedAt  *time.Time `json:"lifted_at,omitempty"`
	LiftedBy  string     `json:"lifted_by,omitempty"`
}

type emergencyJSON struct {
	ID         string     `json:"id"`
	DoctorID   string     `json:"doctor_id"`
	Reason     string     `json:"reason"`
	GrantedAt  time.Time  `json:"granted_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	Review     string     `json:"review"`
	ReviewedBy string     `json:"reviewed_by,omitempty"`
	ReviewedAt *time.Time `json:"reviewed_at,omitempty"`
	ReviewNote string     `json:"review_note,omitempty"`
}

// consentsOf is consents.json, emergency reasons opened with k.
func consentsOf(k *seal.Key, team []persistence.CareTeamMember, rs []persistence.Restriction, em []persistence.EmergencyAccess,
	er []persistence.Erasure) (consents, error) {
	c := consents{CareTeam: []careTeamJSON{}, Restrictions: []restrictionJSON{}, EmergencyAccesses: []emergencyJSON{}, Erasures: []json.RawMessage{}}
	for _, m := range team {
		c.CareTeam = append(c.CareTeam, careTeamJSON{DoctorID: m.DoctorID, Since: m.Since.UTC(), AddedBy: m.AddedBy})
	}
	for _, r := range rs {
		j := restrictionJSON{ID: r.ID, Kind: r.Kind, TargetID: r.TargetID, CreatedAt: r.CreatedAt.UTC(), CreatedBy: r.CreatedBy, LiftedBy: r.LiftedBy}
		if !r.LiftedAt.IsZero() {
			at := r.LiftedAt.UTC()
			j.LiftedAt = &at
		}
		c.Restrictions = append(c.Restrictions, j)
	}
	for _, e := range em {
		reason, err := OpenEmergencyReason(k, e)
		if err != nil {
			return c, err
		}
		j := emergencyJSON{ID: e.ID, DoctorID: e.DoctorID, Reason: reason, GrantedAt: e.GrantedAt.UTC(), ExpiresAt: e.ExpiresAt.UTC(),
			Review: e.Review, ReviewedBy: e.ReviewedBy, ReviewNote: e.ReviewNote}
		if !e.ReviewedAt.IsZero() {
			at := e.ReviewedAt.UTC()
			j.ReviewedAt = &at
		}
		c.EmergencyAccesses = append(c.EmergencyAccesses, j)
	}
	for _, e := range er {
		b, err := protoJSON.Marshal(ErasureOf(e))
		if err != nil {
			return c, err
		}
		c.Erasures = append(c.Erasures, b)
	}
	return c, nil
}

func extensionOf(contentType string) string {
	switch strings.ToLower(contentType) {
	case "application/pdf":
		return ".pdf"
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "text/plain":
		return ".txt"
	}
	return ".bin"
}

// exportJSON writes v as indented JSON, protobuf messages with their
// proto field names (the API's snake_case).
func exportJSON(v any) ([]byte, error) {
	var raw any
	switch m := v.(type) {
	case proto.Message:
		return indented(protoJSON.Marshal(m))
	case []proto.Message:
		items := make([]json.RawMessage, 0, len(m))
		for _, x := range m {
			b, err := protoJSON.Marshal(x)
			if err != nil {
				return nil, err
			}
			items = append(items, b)
		}
		raw = items
	default:
		if ms, ok := asMessages(v); ok {
			return exportJSON(ms)
		}
		raw = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	err := enc.Encode(raw)
	return buf.Bytes(), err
}

// protoJSON writes compact JSON, which indented lays out: protojson's own
// layout varies on purpose from build to build.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

func indented(b []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// asMessages turns a slice of a protobuf message type into []proto.Message.
func asMessages(v any) ([]proto.Message, bool) {
	switch s := v.(type) {
	case []*messages.Vaccination:
		return toMessages(s), true
	case []*messages.AppointmentRecord:
		return toMessages(s), true
	}
	return nil, false
}

func toMessages[M proto.Message](s []M) []proto.Message {
	out := make([]proto.Message, len(s))
	for i, m := range s {
		out[i] = m
	}
	return out
}
