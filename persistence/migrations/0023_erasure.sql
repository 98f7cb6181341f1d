-- Erasure (GDPR art. 17), retention and legal holds (issue 20).
--
-- erasure_requests outlive the patient they name (no foreign key): an
-- erased patient's row is the proof of erasure, with ids and counts only.
-- One open request (pending or approved) per patient.
CREATE TABLE erasure_requests (
    id           UUID        PRIMARY KEY,
    patient_id   UUID        NOT NULL,
    state        TEXT        NOT NULL CHECK (state IN ('pending', 'approved', 'refused', 'erased')),
    requested_by TEXT        NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    reviewed_by  TEXT        NOT NULL DEFAULT '',
    reviewed_at  TIMESTAMPTZ,
    review_note  TEXT        NOT NULL DEFAULT '',
    -- An approved erasure waits while something stands in its way:
    -- blocked_by names it, retain_until says until when (retention).
    blocked_by   TEXT        NOT NULL DEFAULT '',
    retain_until TIMESTAMPTZ,
    erased_at    TIMESTAMPTZ,
    proof        JSONB,
    -- Blobs of the erased documents not yet deleted from the blob store
    -- (unreadable already: their keys died with the patient's data key).
    blobs_left   TEXT[]      NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX erasure_requests_open ON erasure_requests (patient_id) WHERE state IN ('pending', 'approved');
CREATE INDEX erasure_requests_queue ON erasure_requests (requested_at, id);

-- A legal hold keeps a patient's records from erasure and from the
-- retention sweep until it is lifted (admins).
CREATE TABLE legal_holds (
    patient_id UUID        PRIMARY KEY REFERENCES patients (id) ON DELETE CASCADE,
    reason     TEXT        NOT NULL,
    placed_by  TEXT        NOT NULL,
    placed_at  TIMESTAMPTZ NOT NULL
);

-- An emergency access's reason is free text about the patient: it is
-- sealed with the patient's data key (reason_sealed; reason stays empty on
-- new rows), and the audit row names the grant instead of repeating it.
ALTER TABLE emergency_access ADD COLUMN reason_sealed BYTEA;
