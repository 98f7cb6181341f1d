-- The console's audit reports search the whole trail by time, and by the
-- person who acted (patient_id has its own index since 0001).
CREATE INDEX audit_events_time ON audit_events (occurred_at, shard, seq);
CREATE INDEX audit_events_subject ON audit_events (subject, occurred_at, shard, seq);

-- Each check of the audit trail's chains and checkpoints (the same check
-- as `caregrid audit verify`): on a schedule by a member, or on demand by
-- an admin. Its outcome is shown in the console and exported as metrics.
CREATE TABLE audit_verifications (
    id           UUID        PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    -- running, intact, broken (a chain or checkpoint does not hold) or
    -- failed (the check could not finish: the database went away).
    status       TEXT        NOT NULL,
    requested_by TEXT        NOT NULL,
    member       TEXT        NOT NULL,
    shards       INT         NOT NULL DEFAULT 0,
    events       BIGINT      NOT NULL DEFAULT 0,
    problem      TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX audit_verifications_started ON audit_verifications (started_at DESC);

-- Analytics read appointments by start (the booked index covers only
-- booked ones).
CREATE INDEX appointments_start ON appointments (start_at);
