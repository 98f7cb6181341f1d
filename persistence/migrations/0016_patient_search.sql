-- The patient search's read model, fed by the outbox relay from
-- PatientRegistered and PatientUpdated (search.Project) and rebuilt from
-- patients by `caregrid admin reindex`. Demographics only: it never holds
-- clinical data. name_key is the names folded in Go (search.Fold: no
-- unaccent extension), matched by trigrams; phone is the national number.
-- The name index is GiST, not GIN: a search walks it nearest first
-- (ORDER BY word-similarity distance, LIMIT a page), so a common name
-- costs a page, not every namesake (with GIN, "Popescu" among a million
-- patients took 135 ms to rank 25,000 matches; with GiST, under 1 ms).
-- CockroachDB has trigram GIN indexes only: there the search will need
-- its own plan.
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
CREATE INDEX patient_search_name ON patient_search USING GIST (name_key gist_trgm_ops);
CREATE INDEX patient_search_idnp ON patient_search (idnp COLLATE "C");
CREATE INDEX patient_search_phone ON patient_search (phone);
