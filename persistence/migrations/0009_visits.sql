-- Per-patient data keys (envelope encryption): each patient's clinical text
-- is sealed with the patient's own AES-256 key, and that key is stored
-- sealed with the master key. Deleting the row shreds the patient's
-- clinical text (GDPR erasure).
CREATE TABLE patient_keys (
    patient_id UUID PRIMARY KEY REFERENCES patients (id) ON DELETE CASCADE,
    wrapped    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Visits and their diagnoses, written by the patient grain (fenced).
-- *_sealed columns hold clinical text sealed with the patient's data key.
CREATE TABLE visits (
    id               UUID PRIMARY KEY,
    patient_id       UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    doctor_id        UUID NOT NULL,
    appointment_id   UUID,
    occurred_at      TIMESTAMPTZ NOT NULL,
    reason_sealed    BYTEA NOT NULL,
    notes_sealed     BYTEA NOT NULL,
    idempotency_key  TEXT,
    fingerprint      BYTEA,
    created_at       TIMESTAMPTZ NOT NULL,
    created_by       TEXT NOT NULL,
    UNIQUE (patient_id, idempotency_key)
);
CREATE INDEX visits_patient ON visits (patient_id, occurred_at DESC, id DESC);

CREATE TABLE diagnoses (
    id          UUID PRIMARY KEY,
    patient_id  UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    visit_id    UUID NOT NULL REFERENCES visits (id) ON DELETE CASCADE,
    position    INT NOT NULL,
    code        TEXT NOT NULL,
    text_sealed BYTEA NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'resolved')),
    onset       DATE
);
CREATE INDEX diagnoses_visit ON diagnoses (visit_id, position);
CREATE INDEX diagnoses_patient ON diagnoses (patient_id);
