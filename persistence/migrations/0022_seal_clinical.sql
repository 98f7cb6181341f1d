-- Seal what was still plain (issue 20): blood type and allergies on the
-- patient row and in their history, diagnosis codes, vaccination details.
-- Each is sealed with the patient's data key (patient_keys), so shredding
-- that key makes them unreadable with the rest of the record. The plain
-- columns stay for rows written before; new rows leave them empty and
-- persistence.SealPlain moves old rows over at a member's start.
ALTER TABLE patients ADD COLUMN clinical_sealed BYTEA;
ALTER TABLE patient_clinical_history ADD COLUMN sealed BYTEA;
ALTER TABLE diagnoses ADD COLUMN code_sealed BYTEA;
ALTER TABLE vaccinations ADD COLUMN details_sealed BYTEA;
