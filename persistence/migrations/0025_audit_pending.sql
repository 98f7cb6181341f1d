-- A write's audit events, written in the write's own transaction
-- (persistence.WithAudit): a committed change has its audit row whatever
-- becomes of the audit grain, so it never answers 503 for want of it. The
-- shard's audit grain chains them (its next append takes them, oldest
-- first, and deletes them in the same transaction), so each is chained
-- once; a member's drain loop asks it to when they wait.
CREATE TABLE audit_pending (
    id         UUID        PRIMARY KEY,
    shard      INT         NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- event is a caregrid.v1.AuditEvent, protobuf-encoded.
    event      BYTEA       NOT NULL
);
CREATE INDEX audit_pending_shard ON audit_pending (shard, created_at, id);
