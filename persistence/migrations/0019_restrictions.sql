-- A patient's restrictions on who may read their record (issue 20): block a
-- named doctor, or every doctor of a clinic, or limit a doctor to the
-- demographics the desk sees. A blocked doctor is treated as one without a
-- relationship, whatever the care team or an appointment says; a limited
-- one reads no clinical record (persistence.DoctorTreats, DoctorLimited). Rows are never updated but to end them:
-- the table is the history of the patient's choices, with who made and who
-- lifted each and when. Written by the patient grain, fenced.
CREATE TABLE patient_restrictions (
    id         UUID        PRIMARY KEY,
    patient_id UUID        NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    kind       TEXT        NOT NULL CHECK (kind IN ('block-doctor', 'block-clinic', 'demographics-only')),
    target_id  UUID        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT        NOT NULL,
    lifted_at  TIMESTAMPTZ,
    lifted_by  TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX patient_restrictions_patient ON patient_restrictions (patient_id, created_at);
-- At most one live restriction of a kind on one target.
CREATE UNIQUE INDEX patient_restrictions_live ON patient_restrictions (patient_id, kind, target_id) WHERE lifted_at IS NULL;
