// Package blob stores opaque objects (sealed document contents) by key.
// The Store interface has a local directory behind it by default; an
// S3-compatible store can stand in its place.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// ErrNotFound is returned by Get for a key with no object.
var ErrNotFound = errors.New("blob: no such object")

// Store keeps objects by key, as streams: objects (sealed documents) are
// up to tens of megabytes and are never held whole in memory. Put is
// atomic: a reader sees the whole object or none.
type Store interface {
	// Put stores the size bytes r yields under key; r yielding another
	// number of bytes fails the Put and stores nothing.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object under key (ErrNotFound: none); the caller
	// closes it.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Delete(ctx context.Context, key string) error
}

// ErrSize is a Put whose reader did not yield the size it announced.
var ErrSize = errors.New("blob: the object is not the size announced")

// keyPattern is what keys may look like: path segments of safe characters,
// so a key can never leave the store's directory.
var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$`)

// Dir is a Store in a local directory (one file per object).
type Dir struct{ Root string }

func checkKey(key string) error {
	if !keyPattern.MatchString(key) {
		return fmt.Errorf("blob: bad key %q", key)
	}
	return nil
}

func (d Dir) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.Root, filepath.FromSlash(key)), nil
}

// Put writes to a temporary file, syncs it and renames it into place.
func (d Dir) Put(_ context.Context, key string, r io.Reader, size int64) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if err == nil && n != size {
		err = ErrSize
	}
	if err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

func (d Dir) Get(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

func (d Dir) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
