-- Every change of a patient's blood type or allergies, with who made it:
-- written in the transaction that changes the patient row.
CREATE TABLE patient_clinical_history (
    patient_id UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    changed_by TEXT NOT NULL,
    blood_type TEXT NOT NULL,
    allergies  JSONB NOT NULL,
    PRIMARY KEY (patient_id, version)
);
