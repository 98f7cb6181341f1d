-- Appointments belong to the doctor's calendar grain (kind Calendar), which
-- writes them only through its fence. A booking is first written as a hold
-- (status held, hold_expires_at set) and confirmed (status booked) once the
-- patient's grain has accepted it; a hold past hold_expires_at counts for
-- nothing, also after a restart.
CREATE TABLE appointments (
    id              UUID        PRIMARY KEY,
    doctor_id       UUID        NOT NULL REFERENCES doctors (id),
    patient_id      UUID        NOT NULL,
    start_at        TIMESTAMPTZ NOT NULL,
    end_at          TIMESTAMPTZ NOT NULL,
    status          TEXT        NOT NULL,
    hold_expires_at TIMESTAMPTZ,
    reason          TEXT        NOT NULL,
    -- fingerprint identifies the idempotent request that created the row.
    fingerprint     BYTEA       NOT NULL,
    booked_by       TEXT        NOT NULL,
    version         BIGINT      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT appointments_interval CHECK (start_at < end_at)
);
CREATE INDEX appointments_doctor ON appointments (doctor_id, start_at);
CREATE INDEX appointments_patient ON appointments (patient_id, start_at);

-- slot_claims is the database's own guard against double booking: one row
-- per 5-minute grid cell a held or active appointment covers. The primary
-- key refuses a second claim on a cell even if the grain logic were wrong.
CREATE TABLE slot_claims (
    doctor_id      UUID        NOT NULL,
    cell_start     TIMESTAMPTZ NOT NULL,
    appointment_id UUID        NOT NULL REFERENCES appointments (id),
    PRIMARY KEY (doctor_id, cell_start)
);
CREATE INDEX slot_claims_appointment ON slot_claims (appointment_id);

-- patient_reservations is the patient grain's record of the appointments it
-- accepted (written through the patient's fence), so that a patient cannot
-- be booked twice at once across doctors. Whether a reservation still holds
-- is read from its appointment: held and unexpired, or active. pending_until
-- covers the moment between the patient accepting and the calendar
-- confirming (a new time during a reschedule).
CREATE TABLE patient_reservations (
    appointment_id UUID        PRIMARY KEY,
    patient_id     UUID        NOT NULL,
    doctor_id      UUID        NOT NULL,
    start_at       TIMESTAMPTZ NOT NULL,
    end_at         TIMESTAMPTZ NOT NULL,
    pending_until  TIMESTAMPTZ NOT NULL
);
CREATE INDEX patient_reservations_patient ON patient_reservations (patient_id, end_at);
