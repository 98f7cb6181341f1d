-- A patient's care team: doctors with a care relationship to the patient
-- besides appointments (a family doctor). Like an appointment that took
-- place or is to take place, it lets the doctor read the record. Written by
-- the patient grain, fenced.
CREATE TABLE care_team (
    patient_id UUID NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    doctor_id  UUID NOT NULL REFERENCES doctors (id) ON DELETE CASCADE,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    added_by   TEXT NOT NULL,
    PRIMARY KEY (patient_id, doctor_id)
);
CREATE INDEX care_team_doctor ON care_team (doctor_id);
