-- Clinics and doctors. A doctor's row belongs to their calendar grain
-- (kind Calendar), which also owns their working hours (availability).
CREATE TABLE clinics (
    id                       UUID        PRIMARY KEY,
    name                     TEXT        NOT NULL,
    address                  TEXT        NOT NULL,
    time_zone                TEXT        NOT NULL,
    version                  BIGINT      NOT NULL,
    registration_fingerprint BYTEA       NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);

CREATE TABLE doctors (
    id                       UUID        PRIMARY KEY,
    given_name               TEXT        NOT NULL,
    family_name              TEXT        NOT NULL,
    specialty                TEXT        NOT NULL,
    clinic_id                UUID        NOT NULL REFERENCES clinics (id),
    email                    TEXT        NOT NULL,
    phone                    TEXT        NOT NULL,
    time_zone                TEXT        NOT NULL,
    slot_minutes             INT         NOT NULL,
    -- availability is the weekly hours and exceptions, as the API shows them.
    availability             JSONB       NOT NULL,
    version                  BIGINT      NOT NULL,
    registration_fingerprint BYTEA       NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX doctors_specialty ON doctors (specialty, clinic_id);
