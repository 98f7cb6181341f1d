package seal

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

// TestSealedStreamsOpenOnlyAsSealed: a stream opens to what was sealed,
// with the same key and aad only, and any changed, cut or reordered byte
// makes it fail rather than give out other content.
func TestSealedStreamsOpenOnlyAsSealed(t *testing.T) {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	content := make([]byte, 300<<10+17) // five packages and a bit
	_, _ = rand.Read(content)
	var sealed bytes.Buffer
	n, err := SealStream(&sealed, bytes.NewReader(content), key, "document/a")
	if err != nil || n != int64(sealed.Len()) || sealed.Bytes()[0] != StreamFormat || sealed.Bytes()[0] == version {
		t.Fatalf("SealStream = %d, %v (%d bytes, first %#x)", n, err, sealed.Len(), sealed.Bytes()[0])
	}
	if size, err := StreamSize(int64(len(content))); err != nil || size != n {
		t.Fatalf("StreamSize = %d, %v; sealed %d", size, err, n)
	}
	open := func(b []byte, key []byte, aad string) ([]byte, error) {
		r, err := OpenStream(bytes.NewReader(b), key, aad)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	if got, err := open(sealed.Bytes(), key, "document/a"); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("open = %d bytes, %v", len(got), err)
	}
	other := make([]byte, KeySize)
	flipped := bytes.Clone(sealed.Bytes())
	flipped[len(flipped)/2] ^= 1
	swapped := bytes.Clone(sealed.Bytes())
	pkg := 64<<10 + 32 // one sealed package: header, payload, tag
	copy(swapped[pkg:2*pkg], sealed.Bytes()[2*pkg:3*pkg])
	copy(swapped[2*pkg:3*pkg], sealed.Bytes()[pkg:2*pkg])
	for name, tt := range map[string]struct {
		b   []byte
		key []byte
		aad string
	}{
		"another aad":        {sealed.Bytes(), key, "document/b"},
		"another key":        {sealed.Bytes(), other, "document/a"},
		"a flipped bit":      {flipped, key, "document/a"},
		"cut short":          {sealed.Bytes()[:2*pkg], key, "document/a"},
		"packages reordered": {swapped, key, "document/a"},
	} {
		if got, err := open(tt.b, tt.key, tt.aad); err == nil {
			t.Errorf("%s: opened to %d bytes", name, len(got))
		}
	}
}
