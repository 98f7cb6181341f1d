-- Vaccinations, written by the patient grain (fenced). Coded data, not
-- free clinical text, so not sealed.
CREATE TABLE vaccinations (
    id              UUID PRIMARY KEY,
    patient_id      UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    atc_code        TEXT NOT NULL,
    vaccine_name    TEXT NOT NULL,
    given_on        DATE NOT NULL,
    dose_number     INT NOT NULL,
    lot             TEXT NOT NULL DEFAULT '',
    given_by        TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint     BYTEA,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (patient_id, idempotency_key)
);
CREATE INDEX vaccinations_patient ON vaccinations (patient_id, given_on DESC, id DESC);
