package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/caregrid/caregrid/actors/audit"
	"github.com/caregrid/caregrid/persistence"
	"github.com/caregrid/caregrid/persistence/seal"
)

func auditCmd(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "rotate-key" {
		return rotateAuditKey(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: caregrid audit verify|rotate-key [--database-url URL]")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	url := fs.String("database-url", envOr("DATABASE_URL", ""), "database (env DATABASE_URL); empty: the embedded one under --data-dir")
	dataDir := fs.String("data-dir", envOr("CAREGRID_DATA_DIR", ".data"), "the embedded database's directory (env CAREGRID_DATA_DIR)")
	export := fs.String("export", "", "check a patient export's access log offline (the ZIP), instead of the database")
	keys := fs.String("keys", "", "with --export: the signing keys to trust, a copy of /.well-known/caregrid-audit-keys kept elsewhere (default: the keys in the export)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *export != "" {
		rep, err := verifyExport(*export, *keys)
		if err != nil {
			return err
		}
		fmt.Printf("export access log intact: %d entries hash as chained, %d follow each other, %d checkpoint signatures hold, %d entries signed\n",
			rep.Entries, rep.Linked, rep.Checkpoints, rep.Matched)
		return nil
	}
	// Without a URL: the embedded database under --data-dir, the running
	// node's when `make run` is up (withAdminDB).
	rest := []string{"--database-url", *url, "--data-dir", *dataDir}
	return withAdminDB(ctx, "audit verify", rest, nil, func(db *persistence.DB) error {
		_, n, err := audit.VerifyTrail(ctx, db, func(shard int32, rows int64) {
			fmt.Printf("shard %d: %d events, chain intact\n", shard, rows)
		})
		if err != nil {
			return err
		}
		fmt.Printf("audit trail intact: %d events\n", n)
		return nil
	})
}

// rotateAuditKey retires the active audit signing key for a new one,
// sealed with the nodes' master key.
func rotateAuditKey(ctx context.Context, args []string) error {
	keyFile := ""
	return withAdminDB(ctx, "audit rotate-key", args, func(fs *flag.FlagSet) {
		fs.StringVar(&keyFile, "master-key-file", envOr("CAREGRID_MASTER_KEY_FILE", filepath.Join(envOr("CAREGRID_DATA_DIR", ".data"), "master.key")),
			"the nodes' master key (env CAREGRID_MASTER_KEY_FILE)")
	}, func(db *persistence.DB) error {
		master, err := seal.LoadKeyFile(keyFile, false)
		if err != nil {
			return fmt.Errorf("audit rotate-key: %w", err)
		}
		k, err := audit.NewSigningKey(master, time.Now())
		if err != nil {
			return err
		}
		if err := db.AddAuditKey(ctx, k, true); err != nil {
			return err
		}
		fmt.Printf("audit signing key %s is active; the one before is retired (its checkpoints still verify)\n", k.ID)
		return nil
	})
}

// verifyExport checks the access log of a patient export (access-log.json
// in the ZIP at path) offline; keysFile, when set, is the JSON of
// /.well-known/caregrid-audit-keys to trust instead of the export's own.
func verifyExport(path, keysFile string) (audit.ExportReport, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return audit.ExportReport{}, err
	}
	defer z.Close()
	f, err := z.Open("access-log.json")
	if err != nil {
		return audit.ExportReport{}, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	var l audit.ExportedLog
	if err := json.NewDecoder(f).Decode(&l); err != nil {
		return audit.ExportReport{}, fmt.Errorf("%s: access-log.json: %w", path, err)
	}
	var trusted map[string][]byte
	if keysFile != "" {
		b, err := os.ReadFile(keysFile)
		if err != nil {
			return audit.ExportReport{}, err
		}
		var published struct {
			Keys []struct {
				ID        string `json:"id"`
				PublicKey []byte `json:"public_key"` // base64, as published
			} `json:"keys"`
		}
		if err := json.Unmarshal(b, &published); err != nil {
			return audit.ExportReport{}, fmt.Errorf("%s: %w", keysFile, err)
		}
		trusted = map[string][]byte{}
		for _, k := range published.Keys {
			trusted[k.ID] = k.PublicKey
		}
	}
	return audit.VerifyExported(l, trusted)
}
