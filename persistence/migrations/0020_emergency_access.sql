-- Emergency access ("break the glass", issue 20): a doctor without a
-- relationship opens a record by stating a reason. It lets them read it
-- until expires_at, past any restriction (persistence.DoctorTreats), and
-- waits in the review queue until a privacy officer (an admin) approves
-- or flags it. The grant itself is in the patient's access log with its
-- reason (break_glass_reason) and purpose ETREAT. Written by the patient
-- grain, fenced; reviewed from the edge.
CREATE TABLE emergency_access (
    id          UUID        PRIMARY KEY,
    patient_id  UUID        NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    doctor_id   UUID        NOT NULL REFERENCES doctors (id),
    reason      TEXT        NOT NULL,
    granted_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    review      TEXT        NOT NULL DEFAULT 'pending' CHECK (review IN ('pending', 'approved', 'flagged')),
    reviewed_by TEXT        NOT NULL DEFAULT '',
    reviewed_at TIMESTAMPTZ,
    review_note TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX emergency_access_patient ON emergency_access (patient_id, doctor_id, expires_at);
CREATE INDEX emergency_access_pending ON emergency_access (granted_at) WHERE review = 'pending';
