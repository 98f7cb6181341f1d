-- The embedded OpenID Provider's state. None of it belongs to a grain: it is
-- written by whichever node handles a login or a token request, so every
-- table is keyed so that two nodes racing on one row decide by the database
-- (a conditional UPDATE or a unique key), never by a read-then-write.

-- An account's id is the subject of its tokens. Patient and doctor accounts
-- take the id of the record they are linked to, so a token's subject is
-- what the grains' access rules compare with (a patient's own record).
CREATE TABLE accounts (
    id             UUID PRIMARY KEY,
    username       TEXT NOT NULL,
    email          TEXT NOT NULL DEFAULT '',
    role           TEXT NOT NULL CHECK (role IN ('patient', 'doctor', 'receptionist', 'admin')),
    -- argon2id in PHC form; empty for service accounts (their client holds a secret).
    password_hash  TEXT NOT NULL DEFAULT '',
    -- The TOTP secret, sealed with the master key; NULL until enrolled.
    totp_sealed    BYTEA,
    -- The account must set a new password at its next login (bootstrap).
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins  INT NOT NULL DEFAULT 0,
    locked_until   TIMESTAMPTZ,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_username ON accounts (lower(username));

-- Single-use recovery codes, stored as SHA-256 (they are random, not chosen).
CREATE TABLE recovery_codes (
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  BYTEA NOT NULL,
    used_at    TIMESTAMPTZ,
    PRIMARY KEY (account_id, code_hash)
);

CREATE TABLE oidc_clients (
    id                       TEXT PRIMARY KEY,
    name                     TEXT NOT NULL,
    -- public: browser or native app, PKCE S256 required, no secret;
    -- confidential: web app with a secret; service: client credentials only.
    kind                     TEXT NOT NULL CHECK (kind IN ('public', 'confidential', 'service')),
    -- SHA-256 of the secret (secrets are 256-bit random, so no slow hash is needed).
    secret_hash              BYTEA,
    redirect_uris            TEXT[] NOT NULL DEFAULT '{}',
    post_logout_redirect_uris TEXT[] NOT NULL DEFAULT '{}',
    -- The service account a service client acts as.
    account_id               UUID REFERENCES accounts (id) ON DELETE CASCADE,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- An authorization request between /authorize and the token exchange.
CREATE TABLE oidc_auth_requests (
    id             UUID PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES oidc_clients (id) ON DELETE CASCADE,
    request        JSONB NOT NULL,
    account_id     UUID REFERENCES accounts (id) ON DELETE CASCADE,
    session_id     UUID,
    auth_time      TIMESTAMPTZ,
    amr            TEXT[] NOT NULL DEFAULT '{}',
    -- Password checked, second factor still due.
    password_ok    BOOLEAN NOT NULL DEFAULT FALSE,
    done           BOOLEAN NOT NULL DEFAULT FALSE,
    code           TEXT UNIQUE,
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_auth_requests_expires ON oidc_auth_requests (expires_at);

-- A login session: what a refresh token, and every access token minted from
-- it, belongs to. Revoking it ends them all.
CREATE TABLE oidc_sessions (
    id             UUID PRIMARY KEY,
    account_id     UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    amr            TEXT[] NOT NULL DEFAULT '{}',
    auth_time      TIMESTAMPTZ NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT NOT NULL DEFAULT '',
    source_address TEXT NOT NULL DEFAULT '',
    user_agent     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX oidc_sessions_account ON oidc_sessions (account_id, created_at DESC);

-- Refresh tokens rotate: each use marks the token used and issues a child.
-- A used token presented again is a reuse, and revokes the whole session.
CREATE TABLE oidc_refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    session_id  UUID NOT NULL REFERENCES oidc_sessions (id) ON DELETE CASCADE,
    scopes      TEXT[] NOT NULL,
    audience    TEXT[] NOT NULL,
    issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at     TIMESTAMPTZ
);
CREATE INDEX oidc_refresh_tokens_session ON oidc_refresh_tokens (session_id);

-- Token signing keys, private halves sealed with the master key. A key signs
-- from created_at until sign_until, and is published until publish_until
-- (sign_until plus the longest token lifetime), so tokens it signed verify
-- on every node until they expire.
CREATE TABLE oidc_signing_keys (
    id             TEXT PRIMARY KEY,
    algorithm      TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    public_jwk     JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    sign_until     TIMESTAMPTZ NOT NULL,
    publish_until  TIMESTAMPTZ NOT NULL
);
