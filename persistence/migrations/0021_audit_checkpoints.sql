-- Signed checkpoints of the audit chains (issue 20, "audit the audit"):
-- every member signs each shard's chain head now and then with an Ed25519
-- key (its private half sealed with the master key), so that someone with
-- write access to the database cannot rewrite a chain whole or cut its
-- tail unseen: `caregrid audit verify` finds a checkpointed hash the chain
-- no longer has, or a chain shorter than its last checkpoint. The public
-- keys are published at /.well-known/caregrid-audit-keys, to be kept
-- outside the database. One key is active at a time (retired_at NULL);
-- `caregrid audit rotate-key` retires it for a new one.
CREATE TABLE audit_signing_keys (
    id             TEXT        PRIMARY KEY,
    public_key     BYTEA       NOT NULL,
    private_sealed BYTEA       NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    retired_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX audit_signing_keys_active ON audit_signing_keys ((TRUE)) WHERE retired_at IS NULL;

CREATE TABLE audit_checkpoints (
    shard     INT         NOT NULL,
    seq       BIGINT      NOT NULL,
    hash      BYTEA       NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL,
    key_id    TEXT        NOT NULL REFERENCES audit_signing_keys (id),
    signature BYTEA       NOT NULL,
    PRIMARY KEY (shard, seq)
);
