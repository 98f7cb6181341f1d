package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"

	"github.com/minio/sio"
)

// Streams: content too large to hold in memory (documents) is sealed as a
// stream of 64 KiB packages (DARE 2.0, github.com/minio/sio: AES-256-GCM
// or ChaCha20-Poly1305, each package authenticated with its sequence
// number and the last one marked final, so a stream cannot be cut, reordered
// or spliced without Open failing). A stream's first byte is the format's
// version (0x20), never Seal's (1), so a reader tells the two apart.

// StreamFormat is the first byte of a sealed stream.
const StreamFormat byte = sio.Version20

// streamKey binds a stream to its aad: the stream's key is derived from
// the given key and the aad, so a stream opens only as what it was sealed as.
func streamKey(key []byte, aad string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("caregrid-stream\x00" + aad))
	return m.Sum(nil)
}

func streamConfig(key []byte, aad string) sio.Config {
	return sio.Config{Key: streamKey(key, aad), MinVersion: sio.Version20, MaxVersion: sio.Version20}
}

// SealStream writes src to dst sealed under key (32 bytes) bound to aad,
// and returns how many sealed bytes it wrote. Memory use is one package.
func SealStream(dst io.Writer, src io.Reader, key []byte, aad string) (int64, error) {
	if len(key) != KeySize {
		return 0, errors.New("seal: a stream key is 32 bytes")
	}
	cw := &countingWriter{w: dst}
	w, err := sio.EncryptWriter(cw, streamConfig(key, aad))
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(w, src); err != nil {
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// OpenStream reads what SealStream wrote, with the same key and aad. Its
// Read fails (ErrOpen) at the first package that does not authenticate,
// and at a stream that ends before its final package.
func OpenStream(src io.Reader, key []byte, aad string) (io.Reader, error) {
	if len(key) != KeySize {
		return nil, errors.New("seal: a stream key is 32 bytes")
	}
	r, err := sio.DecryptReader(src, streamConfig(key, aad))
	if err != nil {
		return nil, err
	}
	return openErrors{r}, nil
}

// StreamSize is the size of a sealed stream of n bytes.
func StreamSize(n int64) (int64, error) {
	s, err := sio.EncryptedSize(uint64(n))
	return int64(s), err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// openErrors reports any authentication failure as ErrOpen.
type openErrors struct{ r io.Reader }

func (o openErrors) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	var se sio.Error
	if errors.As(err, &se) {
		return n, ErrOpen
	}
	return n, err
}

// PlainSize is the size of what a sealed stream of n bytes opens to.
func PlainSize(n int64) (int64, error) {
	s, err := sio.DecryptedSize(uint64(n))
	return int64(s), err
}
