-- Machine accounts (service clients, client-credentials only) may hold the
-- service role: a system such as a pharmacy, which reads and dispenses
-- prescriptions and nothing else. People never get it (the API and
-- 'admin account create' refuse it).
ALTER TABLE accounts DROP CONSTRAINT accounts_role_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_role_check CHECK (role IN ('patient', 'doctor', 'receptionist', 'admin', 'service'));
