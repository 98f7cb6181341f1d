-- Each member incarnation appends to an audit chain (shard) of its own,
-- opened when it starts and never reopened: a member that is paused or
-- killed stalls no other member's audited requests, and no two processes
-- ever append to one chain. This lists them, for operators and the check.
CREATE TABLE audit_chains (
    shard     INT         NOT NULL,
    member    TEXT        NOT NULL,
    address   TEXT        NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT audit_chains_pkey PRIMARY KEY (shard)
);
-- Chains written before this table (the fixed shards) are listed too.
INSERT INTO audit_chains (shard, member, address, opened_at)
SELECT shard, 'shard-' || shard::TEXT, '', min(occurred_at) FROM audit_events GROUP BY shard;
