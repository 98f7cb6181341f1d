-- The slot finder is the query side of GET /v1/slots: a projection of the
-- calendars' domain events (DoctorChanged, AppointmentChanged), written only
-- by the outbox relay, never by a grain. Events may arrive twice or out of
-- order (several relays, retries), so every row keeps the version of the
-- event it reflects and an update applies only a newer one.
CREATE TABLE slot_finder_doctors (
    doctor_id     UUID   PRIMARY KEY,
    specialty     TEXT   NOT NULL,
    -- specialty_key is the specialty folded to lower case, as searched.
    specialty_key TEXT   NOT NULL,
    clinic_id     UUID   NOT NULL,
    time_zone     TEXT   NOT NULL,
    slot_minutes  INT    NOT NULL,
    -- availability is the weekly hours and exceptions, as the API shows them.
    availability  JSONB  NOT NULL,
    version       BIGINT NOT NULL
);
CREATE INDEX slot_finder_doctors_specialty ON slot_finder_doctors (specialty_key, clinic_id);
CREATE INDEX slot_finder_doctors_clinic ON slot_finder_doctors (clinic_id);

-- slot_finder_busy is the time each appointment takes from its doctor;
-- occupied is false once it no longer does (cancelled, completed, no-show).
-- The row stays so that an older event arriving late cannot revive it.
CREATE TABLE slot_finder_busy (
    appointment_id UUID        PRIMARY KEY,
    doctor_id      UUID        NOT NULL,
    start_at       TIMESTAMPTZ NOT NULL,
    end_at         TIMESTAMPTZ NOT NULL,
    occupied       BOOLEAN     NOT NULL,
    version        BIGINT      NOT NULL
);
CREATE INDEX slot_finder_busy_doctor ON slot_finder_busy (doctor_id, start_at) WHERE occupied;
