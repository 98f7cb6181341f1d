package patient

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/caregrid/caregrid/actors/validate"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxDocumentTitleChars bounds a document's title.
const MaxDocumentTitleChars = 200

// documentKeyAAD binds a wrapped document key to its document.
func documentKeyAAD(id string) string { return "document/" + id + "/key" }

// RecordDocument keeps a document the edge has sealed and stored: a doctor
// who treats the patient. The document's key is kept wrapped by the
// patient's data key; on refusal the edge deletes the stored content.
func (g *Grain) RecordDocument(req *messages.RecordDocumentRequest, ctx actorcluster.GrainContext) (*messages.DocumentReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_UPLOAD_DOCUMENT
	if err := g.clinicalWrite(ctx, c, action); err != nil {
		return nil, err
	}
	in := req.GetDocument()
	var v validate.Errors
	v.Text("title", in.GetTitle(), MaxDocumentTitleChars, true)
	if !validate.ID(in.GetId()) || in.GetSize() <= 0 || len(in.GetSha256()) != 64 || len(req.GetKey()) != seal.KeySize ||
		!strings.HasPrefix(req.GetBlobKey(), g.id+"/") || in.GetContentType() == "" {
		return nil, errors.New("caregrid: a malformed document from the edge")
	}
	if _, err := hex.DecodeString(in.GetSha256()); err != nil {
		return nil, errors.New("caregrid: a malformed document digest from the edge")
	}
	if err := v.Err(); err != nil {
		return nil, g.refuse(ctx, c, action, g.id, validate.Reply(err))
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	d := &messages.Document{Id: in.Id, PatientId: g.id, Title: in.Title, ContentType: in.ContentType, Size: in.Size, Sha256: in.Sha256,
		UploadedBy: c.GetSubject(), CreatedAt: timestamppb.New(g.deps.Now().UTC().Truncate(time.Microsecond))}
	sctx, cancel := g.storeCtx()
	defer cancel()
	stored := persistence.StoredDocument{Document: d, BlobKey: req.GetBlobKey(), KeyWrapped: k.Seal(req.GetKey(), documentKeyAAD(d.Id))}
	if err := g.deps.DB.RecordDocument(g.written(sctx, c, action, d.Id), g.fence, stored); err != nil {
		return nil, g.storeError(ctx, "record document", err)
	}
	g.chained(ctx)
	return &messages.DocumentReply{Document: d}, nil
}

// Documents lists the documents' metadata, newest first.
func (g *Grain) Documents(req *messages.DocumentsRequest, ctx actorcluster.GrainContext) (*messages.DocumentsReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_LIST_DOCUMENTS
	limit, after, err := g.clinicalRead(ctx, c, action, req.Limit, req.Cursor)
	if err != nil {
		return nil, err
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	rows, err := g.deps.DB.Documents(sctx, g.id, after.start, after.id, limit+1)
	if err != nil {
		return nil, g.storeError(ctx, "documents", err)
	}
	reply := &messages.DocumentsReply{}
	for i, r := range rows {
		if i == limit {
			last := rows[limit-1].Document
			reply.NextCursor = encodeAppointmentCursor(last.CreatedAt.AsTime(), last.Id)
			break
		}
		reply.Documents = append(reply.Documents, r.Document)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, ""); err != nil {
		return nil, err
	}
	return reply, nil
}

// OpenDocument gives the edge what it needs to serve a document's content
// to the patient or a doctor who treats them: the download is audited here.
func (g *Grain) OpenDocument(req *messages.OpenDocumentRequest, ctx actorcluster.GrainContext) (*messages.OpenDocumentReply, error) {
	c := req.GetCaller()
	const action = messages.AuditAction_AUDIT_ACTION_DOWNLOAD_DOCUMENT
	if _, _, err := g.clinicalRead(ctx, c, action, 0, ""); err != nil {
		return nil, err
	}
	if !validate.ID(req.GetDocumentId()) {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no document %s", req.GetDocumentId()))
	}
	sctx, cancel := g.storeCtx()
	defer cancel()
	d, err := g.deps.DB.Document(sctx, g.id, req.GetDocumentId())
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, g.refuse(ctx, c, action, g.id, messages.ErrNotFound("no document %s", req.GetDocumentId()))
	}
	if err != nil {
		return nil, g.storeError(ctx, "document", err)
	}
	k, err := g.key()
	if err != nil {
		return nil, g.storeError(ctx, "data key", err)
	}
	key, err := k.Open(d.KeyWrapped, documentKeyAAD(d.Document.Id))
	if err != nil {
		return nil, g.storeError(ctx, "open document key", err)
	}
	if err := g.record(ctx, c, action, g.id, messages.AuditOutcome_AUDIT_OUTCOME_SUCCESS, d.Document.Id); err != nil {
		return nil, err
	}
	return &messages.OpenDocumentReply{Document: d.Document, BlobKey: d.BlobKey, Key: key}, nil
}

// DocumentAAD binds a document's sealed content to its document.
func DocumentAAD(id string) string { return "document/" + id }

// OpenDocumentContent reads a stored document content: a sealed stream (uploads since
// streaming), or, for documents stored before, one sealed value.
func OpenDocumentContent(stored io.Reader, key []byte, d *messages.Document) (io.Reader, error) {
	br := bufio.NewReader(stored)
	first, err := br.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] == seal.StreamFormat {
		return seal.OpenStream(br, key, DocumentAAD(d.Id))
	}
	sealed, err := io.ReadAll(io.LimitReader(br, d.Size+1024))
	if err != nil {
		return nil, err
	}
	k, err := seal.NewKey(key)
	if err != nil {
		return nil, err
	}
	content, err := k.Open(sealed, DocumentAAD(d.Id))
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(content), nil
}
