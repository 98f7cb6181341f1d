-- Exports of everything held about a patient (GDPR art. 15 and 20, issue
-- 20). The patient grain files one (access decided and audited there); a
-- member claims it (lease: claimed_until), builds the ZIP, seals it with a
-- key of its own (key_sealed, under the master key) into the blob store.
-- The download link's token is kept as its SHA-256 only; it works once,
-- until expires_at. One export in the making per patient.
CREATE TABLE patient_exports (
    id            UUID        PRIMARY KEY,
    patient_id    UUID        NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    requested_by  TEXT        NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL,
    language      TEXT        NOT NULL,
    state         TEXT        NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'building', 'ready', 'failed', 'downloaded', 'expired')),
    progress      INT         NOT NULL DEFAULT 0,
    claimed_by    TEXT        NOT NULL DEFAULT '',
    claimed_until TIMESTAMPTZ,
    blob_key      TEXT,
    key_sealed    BYTEA,
    size          BIGINT      NOT NULL DEFAULT 0,
    token_hash    BYTEA       NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    downloaded_at TIMESTAMPTZ,
    error         TEXT        NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX patient_exports_making ON patient_exports (patient_id) WHERE state IN ('queued', 'building');
CREATE INDEX patient_exports_queue ON patient_exports (requested_at) WHERE state IN ('queued', 'building');
CREATE INDEX patient_exports_blobs ON patient_exports (expires_at) WHERE blob_key IS NOT NULL;
