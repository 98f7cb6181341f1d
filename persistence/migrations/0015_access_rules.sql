-- Who recorded a patient's arrival: a check-in by the desk (not by the
-- appointment's own doctor) is one of the things that let a doctor read
-- the record (persistence.DoctorTreats).
ALTER TABLE appointments ADD COLUMN checked_in_by TEXT NOT NULL DEFAULT '';

-- The X-Request-Id a client sent, kept apart from the edge's own request
-- id. Part of the chain hash only when set, so rows written before this
-- column existed keep their hashes.
ALTER TABLE audit_events ADD COLUMN client_request_id TEXT NOT NULL DEFAULT '';
