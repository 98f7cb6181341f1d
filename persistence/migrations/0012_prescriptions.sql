-- Prescriptions: inserted by the patient's grain (fenced by the patient's
-- claim, after the interaction check), then changed only by the
-- prescription's own grain (fenced by its claim). *_sealed columns hold
-- clinical text sealed with the patient's data key.
CREATE TABLE prescriptions (
    id                UUID PRIMARY KEY,
    patient_id        UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    prescriber_id     UUID NOT NULL,
    atc_code          TEXT NOT NULL,
    medication_name   TEXT NOT NULL,
    strength          TEXT NOT NULL,
    form              TEXT NOT NULL,
    dose              TEXT NOT NULL,
    route             TEXT NOT NULL,
    frequency         TEXT NOT NULL,
    duration_days     INT NOT NULL CHECK (duration_days > 0),
    refills           INT NOT NULL CHECK (refills >= 0),
    notes_sealed      BYTEA NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'completed', 'cancelled', 'expired')),
    -- warnings: the check's findings at creation, as protojson PrescriptionWarnings.
    warnings          JSONB NOT NULL,
    override_sealed   BYTEA,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    ended_at          TIMESTAMPTZ,
    ended_by          TEXT NOT NULL DEFAULT '',
    end_reason_sealed BYTEA,
    version           BIGINT NOT NULL,
    fingerprint       BYTEA
);
CREATE INDEX prescriptions_patient ON prescriptions (patient_id, created_at DESC, id DESC);
-- The interaction check reads a patient's active prescriptions; the expiry
-- sweep finds those whose duration has ended.
CREATE INDEX prescriptions_active ON prescriptions (patient_id) WHERE status = 'active';
CREATE INDEX prescriptions_due ON prescriptions (expires_at) WHERE status = 'active';

CREATE TABLE prescription_dispenses (
    prescription_id UUID NOT NULL REFERENCES prescriptions (id) ON DELETE CASCADE,
    number          INT NOT NULL CHECK (number > 0),
    dispensed_at    TIMESTAMPTZ NOT NULL,
    dispensed_by    TEXT NOT NULL,
    quantity        TEXT NOT NULL,
    idempotency_key TEXT,
    PRIMARY KEY (prescription_id, number),
    UNIQUE (prescription_id, idempotency_key)
);
