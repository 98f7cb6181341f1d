-- The patient search's read model, fed by the outbox relay from
-- PatientRegistered and PatientUpdated (search.Project) and rebuilt from
-- patients by `caregrid admin reindex`. Demographics only: it never holds
-- clinical data. name_key is the names folded in Go (search.Fold: no
-- unaccent extension), matched by trigrams; phone is the national number.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE patient_search (
    patient_id  UUID        PRIMARY KEY,
    idnp        TEXT        NOT NULL,
    given_name  TEXT        NOT NULL,
    family_name TEXT        NOT NULL,
    birth_date  TEXT        NOT NULL,
    sex         TEXT        NOT NULL,
    phone       TEXT        NOT NULL,
    name_key    TEXT        NOT NULL,
    version     BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX patient_search_name ON patient_search USING GIN (name_key gin_trgm_ops);
CREATE INDEX patient_search_idnp ON patient_search (idnp text_pattern_ops);
CREATE INDEX patient_search_phone ON patient_search (phone);
