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

-- diagnosis_counts is the analytics' read model of diagnoses: how many
-- visits recorded each code, per day and doctor, counts only. Diagnosis
-- codes are sealed per patient (0022); the patient grain adds to this
-- table in the visit's own transaction, with the code it has in the clear,
-- and nothing here names a patient, so an erasure leaves it.
CREATE TABLE diagnosis_counts (
    day       DATE   NOT NULL,
    doctor_id UUID   NOT NULL,
    code      TEXT   NOT NULL,
    visits    BIGINT NOT NULL,
    PRIMARY KEY (day, doctor_id, code)
);
-- Diagnoses written before codes were sealed still hold them plain.
INSERT INTO diagnosis_counts (day, doctor_id, code, visits)
SELECT (v.occurred_at AT TIME ZONE 'UTC')::date, v.doctor_id, d.code, count(DISTINCT v.id)
FROM diagnoses d JOIN visits v ON v.id = d.visit_id
WHERE d.code <> ''
GROUP BY 1, 2, 3;
