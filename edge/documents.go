package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/seal"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// Documents configures document uploads.
type Documents struct {
	// Store keeps the sealed contents.
	Store blob.Store
	// MaxBytes bounds one document's content (0: DefaultDocumentMaxBytes).
	MaxBytes int64
	// Types are the content types accepted, as sniffed from the content
	// (nil: DefaultDocumentTypes).
	Types []string
	// StoreTimeout bounds one call to the store (0: DefaultDocumentStoreTimeout):
	// a remote store moving 20 MiB needs longer than a grain request.
	StoreTimeout time.Duration
	// SpoolDir holds uploads, sealed, between the request and the store
	// ("": the system's temporary directory).
	SpoolDir string
}

// storeContext bounds a store call; it outlives a client that hangs up, so
// a refused upload's content is still deleted.
func (d *Documents) storeContext(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	timeout := d.StoreTimeout
	if timeout <= 0 {
		timeout = DefaultDocumentStoreTimeout
	}
	return context.WithTimeout(context.WithoutCancel(c.UserContext()), timeout)
}

// Document defaults.
const (
	DefaultDocumentMaxBytes     = 20 << 20
	DefaultDocumentStoreTimeout = 30 * time.Second
)

var DefaultDocumentTypes = []string{"application/pdf", "image/jpeg", "image/png"}

// multipartSlack is what an upload may carry besides the content: part
// headers, boundaries and the title.
const multipartSlack = 16 << 10

// uploadLimit is the most an upload request's body may hold (0: uploads off).
func (s *Server) uploadLimit() int64 {
	if s.cfg.Documents == nil {
		return 0
	}
	return s.cfg.Documents.MaxBytes + multipartSlack
}

// documentAAD binds a sealed content to its document.
func documentAAD(id string) string { return patient.DocumentAAD(id) }

type documentJSON struct {
	ID          string `json:"id"`
	PatientID   string `json:"patient_id"`
	Title       string `json:"title"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	UploadedBy  string `json:"uploaded_by"`
	CreatedAt   string `json:"created_at"`
}

func toDocumentJSON(d *messages.Document) documentJSON {
	return documentJSON{ID: d.Id, PatientID: d.PatientId, Title: d.Title, ContentType: d.ContentType, Size: d.Size, SHA256: d.Sha256,
		UploadedBy: d.UploadedBy, CreatedAt: instant(d.CreatedAt.AsTime())}
}

func tooLarge(detail string) *Problem {
	return problem(fiber.StatusRequestEntityTooLarge, "body-too-large", "Request body too large", detail)
}

// errTooLarge is returned by a capped reader past its cap.
var errTooLarge = errors.New("body over its limit")

// cappedReader reads at most n bytes and fails with errTooLarge when more follow.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var one [1]byte
		if n, _ := c.r.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// uploadDocument stores a document: multipart/form-data with a "file" part
// and a "title" field. The body is streamed, never held whole: the file
// part is read once, its type sniffed from its first bytes, its digest
// and size counted, and it is sealed on the way (seal.SealStream, a fresh
// key per document) into a spool file, which then goes to the blob store
// with its size known. The patient's grain then decides access and keeps
// the key wrapped; a refused upload's content is deleted.
func (s *Server) uploadDocument(c *fiber.Ctx) error {
	// The body may be left partly unread (a refusal mid-stream): this
	// connection is not reused after the answer.
	c.Context().SetConnectionClose()
	id, err := patientID(c)
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	// Only doctors ever upload: others are refused before their body is read.
	if caller.GetRole() != messages.Role_ROLE_DOCTOR {
		return forbidden("only a doctor who treats the patient uploads documents")
	}
	docs := s.cfg.Documents
	if docs == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Documents are off", "this node has no document store")
	}
	mt, params, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEMultipartForm || params["boundary"] == "" {
		return problem(fiber.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
			"send the document as multipart/form-data with a file part")
	}
	mr := multipart.NewReader(&cappedReader{r: requestBody(c), n: s.uploadLimit()}, params["boundary"])
	var (
		title  string
		stored *spooled
	)
	defer func() { stored.remove() }()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return uploadError(err, docs.MaxBytes)
		}
		switch part.FormName() {
		case "title":
			b, err := io.ReadAll(&cappedReader{r: part, n: 4 * 200})
			if err != nil {
				return uploadError(err, docs.MaxBytes)
			}
			if title = string(b); !CleanString(title) {
				return malformed("the title must be UTF-8 text", FieldError{"title", "must be UTF-8 without control characters"})
			}
		case "file":
			if stored != nil {
				return malformed("the upload has two files; send one", FieldError{"file", "must appear once"})
			}
			if stored, err = spool(part, docs); err != nil {
				return err
			}
		default:
			return malformed(fmt.Sprintf("unexpected part %q; send file and title", part.FormName()), FieldError{part.FormName(), "is not a part of an upload"})
		}
	}
	if stored == nil {
		return malformed("the upload has no file, or an empty one", FieldError{"file", "is required and must not be empty"})
	}
	blobKey := id + "/" + stored.docID
	ctx, cancel := docs.storeContext(c)
	defer cancel()
	if err := docs.Store.Put(ctx, blobKey, stored.file, stored.sealedSize); err != nil {
		s.cfg.Logger.Error("document store failed", "error", err)
		return problem(fiber.StatusServiceUnavailable, "store-unavailable", "Document store unavailable", "")
	}
	req := &messages.RecordDocumentRequest{Caller: caller, BlobKey: blobKey, Key: stored.key, Document: &messages.Document{
		Id: stored.docID, Title: title, ContentType: stored.kind, Size: stored.size, Sha256: stored.sha256}}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.DocumentReply, error) {
		return g.RecordDocument(req, opts...)
	})
	if err != nil {
		if derr := docs.Store.Delete(ctx, blobKey); derr != nil {
			s.cfg.Logger.Warn("refused document left in the store (sealed, its key discarded)", "blob", blobKey, "error", derr)
		}
		return err
	}
	return created(c, "/v1/patients/"+id+"/documents/"+stored.docID, false, toDocumentJSON(reply.Document))
}

// requestBody is the request's body as a stream: fasthttp's own when it
// streams (StreamRequestBody), else the body it holds.
func requestBody(c *fiber.Ctx) io.Reader {
	if c.Request().IsBodyStream() {
		return c.Request().BodyStream()
	}
	return bytes.NewReader(c.Request().Body())
}

// spooled is a document's content, sealed, in a temporary file.
type spooled struct {
	file                *os.File
	docID, kind, sha256 string
	key                 []byte
	size, sealedSize    int64
}

// spool seals a file part into a temporary file, checking its type (by
// its first 512 bytes, whatever the client says) and its size on the way.
func spool(part io.Reader, docs *Documents) (*spooled, error) {
	br := bufio.NewReaderSize(&cappedReader{r: part, n: docs.MaxBytes}, 512)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, uploadError(err, docs.MaxBytes)
	}
	if len(head) == 0 {
		return nil, malformed("the upload has no file, or an empty one", FieldError{"file", "is required and must not be empty"})
	}
	kind, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	if !slices.Contains(docs.Types, kind) {
		return nil, problem(fiber.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported document type",
			"the content is "+kind+"; accepted: "+strings.Join(docs.Types, ", "))
	}
	out := &spooled{docID: uuid.NewString(), kind: kind, key: make([]byte, seal.KeySize)}
	if _, err := rand.Read(out.key); err != nil {
		return nil, err
	}
	if out.file, err = os.CreateTemp(docs.SpoolDir, "caregrid-upload-*"); err != nil {
		return nil, fmt.Errorf("upload spool: %w", err)
	}
	digest := sha256.New()
	counted := &countingReader{r: io.TeeReader(br, digest)}
	if out.sealedSize, err = seal.SealStream(out.file, counted, out.key, documentAAD(out.docID)); err != nil {
		out.remove()
		if errors.Is(err, errTooLarge) || !isSpoolError(err) {
			return nil, uploadError(err, docs.MaxBytes)
		}
		return nil, fmt.Errorf("upload spool: %w", err)
	}
	if _, err := out.file.Seek(0, io.SeekStart); err != nil {
		out.remove()
		return nil, fmt.Errorf("upload spool: %w", err)
	}
	out.size, out.sha256 = counted.n, hex.EncodeToString(digest.Sum(nil))
	return out, nil
}

// isSpoolError tells the spool file's own failures (the node's disk) from
// the body's (the client's).
func isSpoolError(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe)
}

func (s *spooled) remove() {
	if s == nil || s.file == nil {
		return
	}
	s.file.Close()
	os.Remove(s.file.Name())
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// uploadError answers a body that could not be read as an upload.
func uploadError(err error, max int64) error {
	if errors.Is(err, errTooLarge) {
		return tooLarge("a document may hold at most " + strconv.FormatInt(max, 10) + " bytes")
	}
	return malformed("the body is not a readable multipart/form-data upload")
}

func (s *Server) listDocuments(c *fiber.Ctx) error {
	reply, err := patientPage(s, c, func(g *messages.PatientGrainClient, p page, opts ...actorcluster.GrainCallOption) (*messages.DocumentsReply, error) {
		return g.Documents(&messages.DocumentsRequest{Caller: p.caller, Limit: p.limit, Cursor: p.cursor}, opts...)
	})
	if err != nil {
		return err
	}
	out := struct {
		Documents  []documentJSON `json:"documents"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}{Documents: make([]documentJSON, 0, len(reply.Documents)), NextCursor: reply.NextCursor}
	for _, d := range reply.Documents {
		out.Documents = append(out.Documents, toDocumentJSON(d))
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// downloadDocument serves a document's original bytes.
func (s *Server) downloadDocument(c *fiber.Ctx) error {
	id, err := patientID(c)
	if err != nil {
		return err
	}
	document, err := idParam(c, "document")
	if err != nil {
		return err
	}
	caller, err := s.caller(c)
	if err != nil {
		return err
	}
	req := &messages.OpenDocumentRequest{Caller: caller, DocumentId: document}
	reply, err := callPatient(s, c, id, func(g *messages.PatientGrainClient, opts ...actorcluster.GrainCallOption) (*messages.OpenDocumentReply, error) {
		return g.OpenDocument(req, opts...)
	})
	if err != nil {
		return err
	}
	if s.cfg.Documents == nil {
		return problem(fiber.StatusServiceUnavailable, "unavailable", "Documents are off", "this node has no document store")
	}
	// The store's context lives until the answer is sent (the stream is
	// read after this handler returns); closing the stream ends it.
	ctx, cancel := s.cfg.Documents.storeContext(c)
	stored, err := s.cfg.Documents.Store.Get(ctx, reply.BlobKey)
	if err != nil {
		cancel()
		s.cfg.Logger.Error("document content unreadable", "blob", reply.BlobKey, "error", err)
		return problem(fiber.StatusServiceUnavailable, "store-unavailable", "Document store unavailable", "")
	}
	content, err := patient.OpenDocumentContent(stored, reply.Key, reply.Document)
	if err != nil {
		stored.Close()
		cancel()
		s.cfg.Logger.Error("document content does not open", "blob", reply.BlobKey, "error", err)
		return problem(fiber.StatusInternalServerError, "internal", "Internal error", "")
	}
	c.Set(fiber.HeaderContentType, reply.Document.ContentType)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+reply.Document.Id+`"`)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderETag, `"`+reply.Document.Sha256+`"`)
	// Streamed: a package that fails to authenticate ends the answer short
	// of its Content-Length, so no client takes it for the document.
	blobKey := reply.BlobKey
	return c.SendStream(&closing{Reader: content, close: func() error { cancel(); return stored.Close() },
		failed: func(err error) {
			s.cfg.Logger.Error("document content failed while it was sent", "blob", blobKey, "error", err)
		}}, int(reply.Document.Size))
}

// closing is a reader with its own Close (fasthttp closes a body stream
// once it has sent it) that reports a failed read (fasthttp can only cut
// the answer short).
type closing struct {
	io.Reader
	close  func() error
	failed func(error)
}

func (c *closing) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	if err != nil && err != io.EOF {
		c.failed(err)
	}
	return n, err
}

func (c *closing) Close() error { return c.close() }
