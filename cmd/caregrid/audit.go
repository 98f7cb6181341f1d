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
	"slices"
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
	url := fs.String("database-url", envOr("DATABASE_URL", ""), "database (env DATABASE_URL)")
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
	if *url == "" {
		return errors.New("audit verify: set DATABASE_URL or --database-url")
	}
	db, err := persistence.Open(ctx, *url, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := verifyAudit(ctx, db, func(shard int32, rows int64) {
		fmt.Printf("shard %d: %d events, chain intact\n", shard, rows)
	})
	if err != nil {
		return err
	}
	fmt.Printf("audit trail intact: %d events\n", n)
	return nil
}

// verifyAudit checks every shard's hash chain from its first row, and the
// chain against its signed checkpoints: a checkpoint whose signature does
// not verify, a checkpointed hash the chain no longer has (a rewrite), a
// chain shorter than its last checkpoint (a cut tail).
func verifyAudit(ctx context.Context, db *persistence.DB, report func(shard int32, rows int64)) (int64, error) {
	shards, err := db.AuditShards(ctx)
	if err != nil {
		return 0, err
	}
	signedShards, err := db.CheckpointShards(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range signedShards {
		if !slices.Contains(shards, s) {
			shards = append(shards, s) // every row of a signed shard deleted
		}
	}
	keys := map[string][]byte{}
	ks, err := db.AuditKeys(ctx)
	if err != nil {
		return 0, err
	}
	for _, k := range ks {
		keys[k.ID] = k.Public
	}
	var total int64
	for _, s := range shards {
		cps, err := db.Checkpoints(ctx, s)
		if err != nil {
			return total, err
		}
		signed := map[int64]bool{}
		for _, cp := range cps {
			signed[cp.Seq] = true
		}
		hashes := map[int64][]byte{}
		var head int64
		v := &audit.Verifier{Shard: s}
		err = db.ScanAuditChain(ctx, s, func(r persistence.AuditRow) error {
			if signed[r.Seq] {
				hashes[r.Seq] = r.Hash
			}
			head = r.Seq
			return v.Next(r)
		})
		if err != nil {
			return total, fmt.Errorf("audit trail broken: %w", err)
		}
		if err := audit.CheckCheckpoints(s, cps, keys, hashes, head); err != nil {
			return total, fmt.Errorf("audit trail broken: %w", err)
		}
		report(s, v.Rows)
		total += v.Rows
	}
	return total, nil
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
