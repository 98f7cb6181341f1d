-- Names people read where ids stood (issue 19): a staff account's display
-- name and clinic, shown in a patient's access log and in the account
-- directory. A doctor's name and clinic come from their record, a
-- patient's from the search read model; these columns are for the others
-- (receptionists, admins, services).
ALTER TABLE accounts ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN clinic_id UUID REFERENCES clinics (id);
