-- Notifications (issue 21): what a patient wants to be told and how, the
-- browsers that receive push messages, and every message decided, with its
-- delivery state.

-- notification_preferences: a patient's language, channels, reminders and
-- quiet hours. No row: the defaults (notify.DefaultPreferences).
CREATE TABLE notification_preferences (
    patient_id  UUID        PRIMARY KEY REFERENCES patients (id) ON DELETE CASCADE,
    language    TEXT        NOT NULL,
    -- channels: of email, sms, push, those the patient chose.
    channels    TEXT[]      NOT NULL,
    reminders   BOOLEAN     NOT NULL,
    -- quiet hours in minutes after midnight in time_zone; start = end: none.
    quiet_start INT         NOT NULL,
    quiet_end   INT         NOT NULL,
    time_zone   TEXT        NOT NULL,
    version     BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- push_subscriptions: a browser's Web Push subscription (RFC 8030), for the
-- subject of the token that registered it (a patient id for patients).
CREATE TABLE push_subscriptions (
    id         UUID        PRIMARY KEY,
    subject    TEXT        NOT NULL,
    endpoint   TEXT        NOT NULL,
    p256dh     TEXT        NOT NULL,
    auth       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT push_subscriptions_endpoint_key UNIQUE (endpoint)
);
CREATE INDEX push_subscriptions_subject ON push_subscriptions (subject);

-- notification_events: domain events the relay took from the outbox for
-- the notifier, in the relay's transaction; the notifier decides their
-- messages and deletes them in one transaction. The id is the outbox
-- event's, so a repeated relay inserts once.
CREATE TABLE notification_events (
    id         UUID        PRIMARY KEY,
    event      TEXT        NOT NULL,
    patient_id UUID        NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    -- about: the appointment, prescription or emergency access it is about.
    about      TEXT        NOT NULL,
    -- data: what the templates need besides the patient (JSON).
    data       JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX notification_events_created ON notification_events (created_at);

-- notifications: one message to one address over one channel. Written in
-- the transaction that decides it; sent at least once by the dispatchers
-- (every member; SKIP LOCKED and a lease share the work).
CREATE TABLE notifications (
    id              UUID        PRIMARY KEY,
    -- dedup_key: the decision's key and the channel; a repeated decision
    -- (a retried relay, two sweeps) writes nothing.
    dedup_key       TEXT        NOT NULL,
    -- patient_id: NULL for account mail.
    patient_id      UUID        REFERENCES patients (id) ON DELETE CASCADE,
    event           TEXT        NOT NULL,
    channel         TEXT        NOT NULL,
    language        TEXT        NOT NULL,
    about           TEXT        NOT NULL,
    state           TEXT        NOT NULL,
    attempts        INT         NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_until     TIMESTAMPTZ,
    last_error      TEXT        NOT NULL,
    -- provider_id: the provider's id for the message (SMPP message_id),
    -- matched by its delivery receipt.
    provider_id     TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    CONSTRAINT notifications_dedup_key UNIQUE (dedup_key),
    CONSTRAINT notifications_channel CHECK (channel IN ('email', 'sms', 'push')),
    CONSTRAINT notifications_state CHECK (state IN ('pending', 'sending', 'sent', 'delivered', 'dead', 'skipped'))
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX notifications_patient ON notifications (patient_id, created_at DESC);
CREATE INDEX notifications_dead ON notifications (created_at) WHERE state = 'dead';
CREATE INDEX notifications_provider ON notifications (provider_id) WHERE provider_id <> '';

-- notification_contents: a message's address and rendered text, sealed with
-- a key derived from the master key (reset links travel in account mail);
-- deleted once the message is sent or skipped. Apart from notifications so
-- that the queue's rows stay narrow: a dispatcher's claim scans them.
CREATE TABLE notification_contents (
    id             UUID  PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    content_sealed BYTEA NOT NULL
);

-- clinic_reminders: a clinic's reminder offsets before an appointment, in
-- minutes. No row: the node's --reminders.
CREATE TABLE clinic_reminders (
    clinic_id  UUID        PRIMARY KEY REFERENCES clinics (id) ON DELETE CASCADE,
    minutes    INT[]       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- notification_cursors: how far a time-driven sweep (reminders, ending
-- prescriptions) has decided; the sweep locks its row, so one member at a
-- time decides a window.
-- A cursor is a position in the sweep's order (at, id, n): what it has
-- decided, ties at one instant included, so that a window larger than one
-- batch is decided in several without a gap.
CREATE TABLE notification_cursors (
    name     TEXT        PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    after_id UUID        NOT NULL,
    after_n  INT         NOT NULL
);

-- known_devices: the browsers an account has signed in from (a cookie's
-- hash), so that a sign-in from a new one is told to the account's owner.
CREATE TABLE known_devices (
    account_id  UUID        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_hash BYTEA       NOT NULL,
    user_agent  TEXT        NOT NULL,
    first_seen  TIMESTAMPTZ NOT NULL,
    CONSTRAINT known_devices_pkey PRIMARY KEY (account_id, device_hash)
);

CREATE INDEX appointments_booked_start ON appointments (start_at) WHERE status = 'booked';
