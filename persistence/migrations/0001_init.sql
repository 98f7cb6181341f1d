-- grain_owner records which activation of a grain may write: a new
-- activation bumps epoch; every write checks it (persistence/fence.go).
CREATE TABLE grain_owner (
    kind       TEXT        NOT NULL,
    id         TEXT        NOT NULL,
    epoch      BIGINT      NOT NULL,
    version    BIGINT      NOT NULL DEFAULT 0,
    owner      TEXT        NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE patients (
    id                       UUID        PRIMARY KEY,
    idnp                     TEXT        NOT NULL,
    given_name               TEXT        NOT NULL,
    family_name              TEXT        NOT NULL,
    birth_date               DATE        NOT NULL,
    sex                      TEXT        NOT NULL,
    phone                    TEXT        NOT NULL,
    email                    TEXT        NOT NULL,
    blood_type               TEXT        NOT NULL,
    allergies                JSONB       NOT NULL,
    version                  BIGINT      NOT NULL,
    -- registration_fingerprint identifies the idempotent registration that
    -- created the row, so that its replay is answered with the same patient.
    registration_fingerprint BYTEA       NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL,
    CONSTRAINT patients_idnp_key UNIQUE (idnp)
);

-- outbox holds domain events written in the same transaction as the state
-- change they describe; a relay delivers them at least once.
CREATE TABLE outbox (
    id                UUID        PRIMARY KEY,
    aggregate_kind    TEXT        NOT NULL,
    aggregate_id      TEXT        NOT NULL,
    aggregate_version BIGINT      NOT NULL,
    event_type        TEXT        NOT NULL,
    payload           BYTEA       NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    delivered_at      TIMESTAMPTZ
);
CREATE INDEX outbox_undelivered ON outbox (created_at) WHERE delivered_at IS NULL;

-- audit_events is append-only: rows are inserted by the audit grain of their
-- shard, never updated or deleted. Each shard's rows form a hash chain:
-- hash = SHA-256(prev_hash || canonical event), checked by `caregrid audit verify`.
CREATE TABLE audit_events (
    shard              INT         NOT NULL,
    seq                BIGINT      NOT NULL,
    occurred_at        TIMESTAMPTZ NOT NULL,
    subject            TEXT        NOT NULL,
    role               TEXT        NOT NULL,
    client             TEXT        NOT NULL,
    purpose_of_use     TEXT        NOT NULL,
    break_glass_reason TEXT        NOT NULL,
    request_id         TEXT        NOT NULL,
    source_address     TEXT        NOT NULL,
    action             TEXT        NOT NULL,
    resource_type      TEXT        NOT NULL,
    resource_id        TEXT        NOT NULL,
    patient_id         TEXT        NOT NULL,
    outcome            TEXT        NOT NULL,
    detail             TEXT        NOT NULL,
    prev_hash          BYTEA       NOT NULL,
    hash               BYTEA       NOT NULL,
    PRIMARY KEY (shard, seq)
);
CREATE INDEX audit_events_patient ON audit_events (patient_id, occurred_at, shard, seq);
