package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caregrid/caregrid/messages"
)

// upload is a multipart/form-data body with a title and a file part whose
// declared type is claimed (the server sniffs instead).
func upload(t *testing.T, title string, content []byte, claimed string) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.WriteField("title", title); err != nil {
		t.Fatal(err)
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="scan"`)
	h.Set("Content-Type", claimed)
	part, err := w.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = part.Write(content)
	_ = w.Close()
	return b.Bytes(), w.FormDataContentType()
}

func TestHTTPDocumentsAreSniffedLimitedAndSealed(t *testing.T) {
	s := startTestServer(t)
	ctx := context.Background()
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	otherDoc := s.token(messages.Role_ROLE_DOCTOR, workingDoctor(t, s))
	desk := s.token(messages.Role_ROLE_RECEPTIONIST, "desk-1")
	id := treatedPatient(t, s, doctorID)
	self := s.token(messages.Role_ROLE_PATIENT, id)
	docs := "/v1/patients/" + id + "/documents"

	pdf := []byte("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\nDischarge letter: CONFIDENTIAL-MARKER\n%%EOF\n")
	body, ctype := upload(t, "Discharge letter", pdf, "application/octet-stream")
	expect(t, "a doctor who does not treat the patient", s.do("POST", docs, otherDoc, body, "Content-Type", ctype), 403)
	expect(t, "a receptionist", s.do("POST", docs, desk, body, "Content-Type", ctype), 403)
	expect(t, "the patient", s.do("POST", docs, self, body, "Content-Type", ctype), 403)
	expect(t, "JSON instead of a form", s.do("POST", docs, doc, map[string]string{"title": "x"}), 415)

	r := s.do("POST", docs, doc, body, "Content-Type", ctype)
	expect(t, "upload a PDF", r, 201)
	var d struct {
		ID, Title, SHA256 string
		ContentType       string `json:"content_type"`
		Size              int
	}
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pdf)
	if d.ContentType != "application/pdf" || d.Size != len(pdf) || d.SHA256 != hex.EncodeToString(sum[:]) || d.Title != "Discharge letter" {
		t.Fatalf("document = %s", r.body)
	}
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 200)...)
	body, ctype = upload(t, "X-ray", png, "image/png")
	expect(t, "upload a PNG", s.do("POST", docs, doc, body, "Content-Type", ctype), 201)

	// The type is the content's, not the claim's.
	body, ctype = upload(t, "not an image", []byte("<html><script>alert(1)</script></html>"), "image/png")
	r = s.do("POST", docs, doc, body, "Content-Type", ctype)
	expect(t, "HTML claiming to be PNG", r, 415)
	if !strings.Contains(string(r.body), "text/html") {
		t.Fatalf("415 = %s", r.body)
	}
	// Over the limit (1 MiB in tests): the content, and a body over the
	// whole upload limit (refused on its Content-Length).
	body, ctype = upload(t, "too big", append([]byte("%PDF-1.7\n"), make([]byte, 1<<20)...), "application/pdf")
	expect(t, "a document over the limit", s.do("POST", docs, doc, body, "Content-Type", ctype), 413)
	if st := oversizeStatus(t, s, docs, doc, ctype, 2<<20); st != 413 {
		t.Fatalf("a body over the upload limit = %d, want 413 before it is sent", st)
	}
	// Other routes keep their own limit.
	// (Its Content-Length is refused before the body is read, so the status
	// is read before sending it: a client still writing it would see the
	// connection close under it.)
	if st := oversizeStatus(t, s, "/v1/patients", desk, "application/json", 100<<10); st != 413 {
		t.Fatalf("a JSON body of 100 KiB = %d, want 413", st)
	}

	// Lists and downloads: the patient and the treating doctor.
	r = s.do("GET", docs, self, nil)
	expect(t, "list", r, 200)
	var page struct {
		Documents []struct{ ID, Title string } `json:"documents"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Documents) != 2 || page.Documents[0].Title != "X-ray" {
		t.Fatalf("list = %s", r.body)
	}
	expect(t, "list by a receptionist", s.do("GET", docs, desk, nil), 403)
	r = s.do("GET", docs+"/"+d.ID, self, nil)
	expect(t, "download", r, 200)
	if !bytes.Equal(r.body, pdf) || r.header.Get("Content-Type") != "application/pdf" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("download = %q %v", r.body, r.header)
	}
	expect(t, "download by another doctor", s.do("GET", docs+"/"+d.ID, otherDoc, nil), 403)
	expect(t, "an unknown document", s.do("GET", docs+"/00000000-0000-4000-8000-000000000000", doc, nil), 404)
	otherPatient := treatedPatient(t, s, doctorID)
	expect(t, "a document under another patient's id", s.do("GET", "/v1/patients/"+otherPatient+"/documents/"+d.ID, doc, nil), 404)

	// At rest: sealed content, a wrapped key; refused uploads left nothing.
	var blobKey string
	var wrapped []byte
	if err := s.db.Pool.QueryRow(ctx, `SELECT blob_key, key_wrapped FROM documents WHERE id = $1`, d.ID).Scan(&blobKey, &wrapped); err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(filepath.Join(s.blobs, filepath.FromSlash(blobKey)))
	if err != nil || bytes.Contains(stored, []byte("CONFIDENTIAL-MARKER")) || bytes.Contains(stored, []byte("%PDF")) || len(wrapped) != 1+12+32+16 {
		t.Fatalf("at rest: %d bytes, marker found = %v, wrapped %d (%v)", len(stored), bytes.Contains(stored, []byte("CONFIDENTIAL-MARKER")), len(wrapped), err)
	}
	files, _ := filepath.Glob(filepath.Join(s.blobs, id, "*"))
	if len(files) != 2 {
		t.Fatalf("the store holds %d documents of the patient, want 2 (refused uploads removed): %v", len(files), files)
	}

	r = s.do("GET", "/v1/patients/"+id+"/access-log?limit=500", self, nil)
	var log struct {
		Events []struct{ Action, Outcome string } `json:"events"`
	}
	if err := json.Unmarshal(r.body, &log); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range log.Events {
		seen[e.Action+" "+e.Outcome]++
	}
	for pair, want := range map[string]int{"upload-document success": 2, "upload-document denied": 1, "download-document success": 1,
		"download-document denied": 1, "download-document failed": 1, "list-documents success": 1, "list-documents denied": 1} {
		if seen[pair] != want {
			t.Errorf("access log has %d %q, want %d (all: %v)", seen[pair], pair, want, seen)
		}
	}
}

// oversizeStatus sends only the header of a request whose Content-Length is
// length and returns the status: a server that waited for the body would
// time out. (An HTTP client still writing a body when the server answers
// and closes gets a broken pipe instead of the answer.)
func oversizeStatus(t *testing.T, s *testServer, path, token, ctype string, length int) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: caregrid\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		path, token, ctype, length)
	// The first 16 KiB, then nothing: the server reads ahead at most 8 KiB
	// before its handlers, which refuse on the Content-Length.
	_, _ = conn.Write(bytes.Repeat([]byte("-"), 16<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("oversize body: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDocumentsStreamThroughTheNode: a 16 MiB document goes in and comes
// back out without the node holding it (its body is read as it comes,
// sealed in 64 KiB packages into a spool file, streamed to the store, and
// streamed back out): the whole round trip allocates a fraction of the
// document in this process, which is both the node and its client. Held
// whole, the upload alone would allocate about three times the document.
func TestDocumentsStreamThroughTheNode(t *testing.T) {
	s := startTestServerWithIdentity(t, nil, nil, func(c *nodeConfig) { c.Documents.MaxBytes = 24 << 20 })
	patient, doctorID, _ := bookedPatient(t, s, 1)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	content := append([]byte("%PDF-1.7\n"), make([]byte, 16<<20)...)
	_, _ = rand.Read(content[9:])
	body, ctype := upload(t, "a large scan", content, "application/pdf")
	want := sha256.Sum256(content)

	runtime.GC()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	r := s.do("POST", "/v1/patients/"+patient+"/documents", doc, body, "Content-Type", ctype)
	expect(t, "upload 16 MiB", r, 201)
	id := r.json(t)["id"].(string)
	req, _ := http.NewRequest("GET", s.base+"/v1/patients/"+patient+"/documents/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+doc)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	if err != nil || resp.StatusCode != 200 || n != int64(len(content)) || !bytes.Equal(got.Sum(nil), want[:]) {
		t.Fatalf("download: %d, %d bytes, %v; want the %d bytes uploaded", resp.StatusCode, n, err, len(content))
	}
	const bound = 8 << 20
	allocated := end.TotalAlloc - start.TotalAlloc
	if allocated > bound {
		t.Fatalf("a 16 MiB round trip allocated %d MiB; the bound is %d MiB", allocated>>20, bound>>20)
	}
	t.Logf("a 16 MiB upload and download allocated %.1f MiB (bound %d MiB)", float64(allocated)/(1<<20), bound>>20)
}
