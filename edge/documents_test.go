package edge

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"github.com/caregrid/caregrid/actors/patient"
	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/seal"
)

// TestOpenDocumentReadsBothFormats: documents stored before uploads were
// streamed (one sealed value) open as well as streamed ones, and neither
// opens as another document.
func TestOpenDocumentReadsBothFormats(t *testing.T) {
	raw := make([]byte, seal.KeySize)
	_, _ = rand.Read(raw)
	content := bytes.Repeat([]byte("%PDF-1.7 scan "), 10000)
	d := &messages.Document{Id: "doc-1", Size: int64(len(content))}
	k, err := seal.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	var streamed bytes.Buffer
	if _, err := seal.SealStream(&streamed, bytes.NewReader(content), raw, documentAAD(d.Id)); err != nil {
		t.Fatal(err)
	}
	for name, stored := range map[string][]byte{"one sealed value": k.Seal(content, documentAAD(d.Id)), "a sealed stream": streamed.Bytes()} {
		r, err := patient.OpenDocumentContent(bytes.NewReader(stored), raw, d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: %d bytes, %v", name, len(got), err)
		}
		other := &messages.Document{Id: "doc-2", Size: d.Size}
		if r, err := patient.OpenDocumentContent(bytes.NewReader(stored), raw, other); err == nil {
			if _, err := io.ReadAll(r); err == nil {
				t.Fatalf("%s opened as another document", name)
			}
		}
	}
}

// TestIDsOfIdempotentRequestsCannotBeComputed: a key names one id on every
// node with the same id key, another caller's, kind's or key's is another,
// and without the node's key the id is not the one computed from the
// source (as ids were before) nor anything a client could derive.
func TestIDsOfIdempotentRequestsCannotBeComputed(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	a, b := New(Config{IDKey: key}), New(Config{IDKey: key})
	id, err := a.newID("patient", "desk-1", "reg-1")
	if err != nil || !isUUID(id) {
		t.Fatalf("newID = %q, %v", id, err)
	}
	if again, _ := b.newID("patient", "desk-1", "reg-1"); again != id {
		t.Fatalf("another node named the same key %s, not %s", again, id)
	}
	other := New(Config{IDKey: bytes.Repeat([]byte{8}, 32)})
	for name, got := range map[string]func() (string, error){
		"another caller":     func() (string, error) { return a.newID("patient", "desk-2", "reg-1") },
		"another kind":       func() (string, error) { return a.newID("appointment", "desk-1", "reg-1") },
		"another key":        func() (string, error) { return a.newID("patient", "desk-1", "reg-2") },
		"another node key":   func() (string, error) { return other.newID("patient", "desk-1", "reg-1") },
		"no Idempotency-Key": func() (string, error) { return a.newID("patient", "desk-1", "") },
	} {
		if g, err := got(); err != nil || g == id || !isUUID(g) {
			t.Errorf("%s: %q, %v", name, g, err)
		}
	}
	if _, err := New(Config{}).newID("patient", "desk-1", "reg-1"); err == nil {
		t.Error("a node without an id key named an idempotent request")
	}
}
