// Package s3fake serves the S3 wire protocol from memory for tests: the
// S3 service cannot run here, so tests talk HTTP to this stand-in with the
// same client production uses.
//
// The fake does not verify request signatures. It does refuse a request
// that is unsigned or signed for another access key, so a test can tell
// whether credentials reached the client.
package s3fake

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running fake with its buckets in memory.
type Server struct {
	URL     string
	backend *s3mem.Backend
}

// Start serves a fake that accepts requests signed for accessKey, with the
// named buckets made; it stops when the test ends.
func Start(t testing.TB, accessKey string, buckets ...string) *Server {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	fake := gofakes3.New(backend, gofakes3.WithoutVersioning())
	srv := httptest.NewServer(requireAccessKey(accessKey, fake.Server()))
	t.Cleanup(srv.Close)
	return &Server{URL: srv.URL, backend: backend}
}

// requireAccessKey answers 403 AccessDenied, as S3 does, to a request whose
// SigV4 Authorization header does not name accessKey.
func requireAccessKey(accessKey string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Authorization"), "Credential="+accessKey+"/") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Object returns what the bucket holds under key, as stored (nil if none).
func (s *Server) Object(t testing.TB, bucket, key string) []byte {
	t.Helper()
	obj, err := s.backend.GetObject(bucket, key, nil)
	if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Contents.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, obj.Contents); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Keys lists the keys the bucket holds.
func (s *Server) Keys(t testing.TB, bucket string) []string {
	t.Helper()
	list, err := s.backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range list.Contents {
		keys = append(keys, c.Key)
	}
	return keys
}
