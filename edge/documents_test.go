package edge

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

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
		r, err := openDocument(bytes.NewReader(stored), raw, d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: %d bytes, %v", name, len(got), err)
		}
		other := &messages.Document{Id: "doc-2", Size: d.Size}
		if r, err := openDocument(bytes.NewReader(stored), raw, other); err == nil {
			if _, err := io.ReadAll(r); err == nil {
				t.Fatalf("%s opened as another document", name)
			}
		}
	}
}
