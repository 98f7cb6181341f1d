-- The relay deletes an event in the transaction that applies it, so the
-- outbox holds only what is still to be delivered: it stays small however
-- long the system runs (a relay scanning a growing table of delivered rows
-- got slower by the hour), and keeps event payloads, which name callers and
-- reasons, no longer than needed. The delivered_at mark and its index go.
DROP INDEX outbox_undelivered;
ALTER TABLE outbox DROP COLUMN delivered_at;
CREATE INDEX outbox_created ON outbox (created_at);
