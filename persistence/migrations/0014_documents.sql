-- Documents in a patient's record, written by the patient grain (fenced).
-- The content is in the blob store under blob_key, sealed with the
-- document's own key; key_wrapped is that key sealed with the patient's
-- data key (envelope encryption: master -> patient -> document).
CREATE TABLE documents (
    id           UUID PRIMARY KEY,
    patient_id   UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL CHECK (size > 0),
    sha256       TEXT NOT NULL,
    blob_key     TEXT NOT NULL UNIQUE,
    key_wrapped  BYTEA NOT NULL,
    uploaded_by  TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX documents_patient ON documents (patient_id, created_at DESC, id DESC);
