package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/caregrid/caregrid/messages"
	"github.com/caregrid/caregrid/persistence/blob/s3fake"
)

// A real caregrid process with its documents in an S3-compatible service:
// the flags and the environment's credentials reach the store, what the
// bucket holds is sealed, and a download gives back the original bytes.
func TestDocumentsInAnS3CompatibleStore(t *testing.T) {
	fake := s3fake.Start(t, "caregrid-node", "caregrid-documents")
	t.Setenv("AWS_ACCESS_KEY_ID", "caregrid-node") // the child process inherits them
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-checked-by-the-fake")
	node, db := startProcess(t, "--blob-s3-endpoint", fake.URL, "--blob-s3-bucket", "caregrid-documents",
		"--blob-s3-region", "eu-central-1", "--blob-s3-path-style")
	s := &testServer{t: t, db: db, base: node.base, tokens: map[string]string{}}
	doctorID := workingDoctor(t, s)
	doc := s.token(messages.Role_ROLE_DOCTOR, doctorID)
	id := treatedPatient(t, s, doctorID)
	docs := "/v1/patients/" + id + "/documents"

	pdf := []byte("%PDF-1.7\nReferral: CONFIDENTIAL-MARKER\n%%EOF\n")
	body, ctype := upload(t, "Referral", pdf, "application/pdf")
	r := s.do("POST", docs, doc, body, "Content-Type", ctype)
	expect(t, "upload to S3", r, 201)
	var d struct{ ID string }
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	// Refused: nothing stays in the bucket.
	body, ctype = upload(t, "script", []byte("<html></html>"), "application/pdf")
	expect(t, "HTML", s.do("POST", docs, doc, body, "Content-Type", ctype), 415)
	other := s.token(messages.Role_ROLE_DOCTOR, workingDoctor(t, s))
	body, ctype = upload(t, "Referral", pdf, "application/pdf")
	expect(t, "an unrelated doctor", s.do("POST", docs, other, body, "Content-Type", ctype), 403)

	var blobKey string
	if err := db.Pool.QueryRow(context.Background(), `SELECT blob_key FROM documents WHERE id = $1`, d.ID).Scan(&blobKey); err != nil {
		t.Fatal(err)
	}
	if keys := fake.Keys(t, "caregrid-documents"); len(keys) != 1 || keys[0] != blobKey {
		t.Fatalf("bucket holds %v, want only %s", keys, blobKey)
	}
	stored := fake.Object(t, "caregrid-documents", blobKey)
	if len(stored) == 0 || bytes.Contains(stored, []byte("CONFIDENTIAL-MARKER")) || bytes.Contains(stored, []byte("%PDF")) {
		t.Fatalf("the bucket holds the plaintext or nothing: %q", stored)
	}
	r = s.do("GET", docs+"/"+d.ID, doc, nil)
	expect(t, "download from S3", r, 200)
	if !bytes.Equal(r.body, pdf) {
		t.Fatalf("download = %q", r.body)
	}
}

// A node whose S3 settings are wrong refuses to start, saying why, rather
// than failing its first upload.
func TestServeChecksTheS3StoreAtStart(t *testing.T) {
	fake := s3fake.Start(t, "caregrid-node", "caregrid-documents")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name, key, bucket, want string
	}{
		{"missing bucket", "caregrid-node", "no-such-bucket", `"no-such-bucket" does not exist`},
		{"wrong credentials", "intruder", "caregrid-documents", "Access Denied"},
	} {
		t.Setenv("AWS_ACCESS_KEY_ID", c.key)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "x")
		cfg, err := serveFlags([]string{"--blob-s3-endpoint", fake.URL, "--blob-s3-bucket", c.bucket, "--blob-s3-path-style"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := documentStore(context.Background(), cfg, quiet); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %s", c.name, err, c.want)
		}
	}
	if _, err := serveFlags([]string{"--blob-s3-endpoint", fake.URL}); err == nil {
		t.Error("an endpoint without a bucket was accepted")
	}
}
