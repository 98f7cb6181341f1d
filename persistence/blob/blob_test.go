package blob

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDirStoresReadsAndDeletes(t *testing.T) {
	ctx := context.Background()
	d := Dir{Root: t.TempDir()}
	data := []byte("sealed bytes")
	if err := d.Put(ctx, "patient-1/doc-1", data); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctx, "patient-1/doc-1")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get = %q, %v", got, err)
	}
	if err := d.Delete(ctx, "patient-1/doc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, "patient-1/doc-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := d.Delete(ctx, "patient-1/doc-1"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Join(d.Root, "patient-1"))
	if len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
	for _, bad := range []string{"../escape", "/abs", "a//b", "a/./b", "", "a/b/"} {
		if err := d.Put(ctx, bad, data); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
}
