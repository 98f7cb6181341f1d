package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caregrid/caregrid/persistence/blob"
	"github.com/caregrid/caregrid/persistence/blob/s3fake"
)

// put and get are Put and Get over byte slices.
func put(ctx context.Context, s blob.Store, key string, data []byte) error {
	return s.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
}

func get(ctx context.Context, s blob.Store, key string) ([]byte, error) {
	r, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// testStore holds every Store to the same contract.
func testStore(t *testing.T, s blob.Store) {
	ctx := context.Background()
	data := []byte("sealed bytes")
	if _, err := get(ctx, s, "patient-1/none"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("get of a missing key: %v, want ErrNotFound", err)
	}
	if err := put(ctx, s, "patient-1/doc-1", data); err != nil {
		t.Fatal(err)
	}
	got, err := get(ctx, s, "patient-1/doc-1")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get = %q, %v", got, err)
	}
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 3<<20) // 12 MiB: past any single-chunk shortcut
	if err := put(ctx, s, "patient-1/doc-2", big); err != nil {
		t.Fatal(err)
	}
	if got, err := get(ctx, s, "patient-1/doc-2"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("get of 12 MiB: %d bytes, %v", len(got), err)
	}
	if err := put(ctx, s, "patient-1/doc-1", []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(ctx, s, "patient-1/doc-1"); string(got) != "replaced" {
		t.Fatalf("after overwrite: %q", got)
	}
	if err := s.Delete(ctx, "patient-1/doc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(ctx, s, "patient-1/doc-1"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.Delete(ctx, "patient-1/doc-1"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	if got, _ := get(ctx, s, "patient-1/doc-2"); !bytes.Equal(got, big) {
		t.Fatal("deleting one object touched another")
	}
	// A reader that yields another size than announced stores nothing.
	if err := s.Put(ctx, "patient-1/short", bytes.NewReader(data), int64(len(data))+1); err == nil {
		t.Error("a short reader was stored")
	}
	if _, err := get(ctx, s, "patient-1/short"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after a short Put: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../escape", "/abs", "a//b", "a/./b", "", "a/b/", "a?b", "a%2fb"} {
		if err := put(ctx, s, bad, data); err == nil {
			t.Errorf("Put accepted key %q", bad)
		}
		if _, err := get(ctx, s, bad); err == nil || errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get of key %q: %v, want a bad-key error", bad, err)
		}
		if err := s.Delete(ctx, bad); err == nil {
			t.Errorf("Delete accepted key %q", bad)
		}
	}
}

func TestDirStore(t *testing.T) {
	d := blob.Dir{Root: t.TempDir()}
	testStore(t, d)
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Join(d.Root, "patient-1"))
	if len(entries) != 1 || entries[0].Name() != "doc-2" {
		t.Fatalf("directory holds %v, want only doc-2", entries)
	}
}

func TestS3Store(t *testing.T) {
	fake := s3fake.Start(t, "caregrid-test", "documents")
	s, err := blob.NewS3(blob.S3Config{Endpoint: fake.URL, Bucket: "documents", Region: "eu-central-1", PathStyle: true,
		AccessKey: "caregrid-test", SecretKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	testStore(t, s)
	// What the service holds is exactly what was put, under the key as is.
	if keys := fake.Keys(t, "documents"); len(keys) != 1 || keys[0] != "patient-1/doc-2" {
		t.Fatalf("bucket holds %v", keys)
	}
	if got := fake.Object(t, "documents", "patient-1/doc-2"); len(got) != 12<<20 {
		t.Fatalf("stored object has %d bytes", len(got))
	}
}

func TestS3CheckRefusesAWrongBucketOrCredentials(t *testing.T) {
	fake := s3fake.Start(t, "caregrid-test", "documents")
	ctx := context.Background()
	cases := []struct {
		name string
		cfg  blob.S3Config
		want string
	}{
		{"missing bucket", blob.S3Config{Bucket: "nope", AccessKey: "caregrid-test", SecretKey: "s"}, "does not exist"},
		{"wrong access key", blob.S3Config{Bucket: "documents", AccessKey: "someone-else", SecretKey: "s"}, "Access Denied"},
	}
	for _, c := range cases {
		c.cfg.Endpoint, c.cfg.Region, c.cfg.PathStyle = fake.URL, "eu-central-1", true
		s, err := blob.NewS3(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check = %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

func TestS3ConfigIsValidated(t *testing.T) {
	for _, cfg := range []blob.S3Config{
		{Endpoint: "s3.example.com", Bucket: "b"},
		{Endpoint: "ftp://s3.example.com", Bucket: "b"},
		{Endpoint: "https://s3.example.com/bucket", Bucket: "b"},
		{Endpoint: "https://s3.example.com"},
	} {
		if _, err := blob.NewS3(cfg); err == nil {
			t.Errorf("NewS3(%+v) accepted", cfg)
		}
	}
}
