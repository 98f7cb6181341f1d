-- Single-use links sent by email: password resets (also how a new staff
-- account sets its first password) and the email check of a patient's
-- self-registration. Stored as SHA-256: the link carries 256 random bits.
CREATE TABLE account_tokens (
    token_hash BYTEA PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('reset', 'verify')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX account_tokens_account ON account_tokens (account_id);

-- A self-registered patient account signs in only after its email link was
-- followed. Accounts made by admins or the CLI are verified from the start.
ALTER TABLE accounts ADD COLUMN verified BOOLEAN NOT NULL DEFAULT TRUE;

-- POST /v1/accounts with an Idempotency-Key: a replay finds the account it
-- made by the key and compares the request's fingerprint.
ALTER TABLE accounts ADD COLUMN creation_key TEXT UNIQUE;
ALTER TABLE accounts ADD COLUMN creation_fingerprint BYTEA;

-- The last TOTP time step a login used: a code is accepted only for a later
-- step, so one seen over a shoulder or replayed within its 30 s is refused.
ALTER TABLE accounts ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
