-- signrelay's store in PostgreSQL: the same records as the sled store, one table per kind.
-- Records are kept as JSON (the types' own serde form, as sled keeps them); the columns beside
-- them are what is looked up, constrained or ordered by.

-- Callbacks. Delivery dedup is the unique dedup_key: a retry of the same delivery cannot be
-- recorded twice, whichever instance receives it.
CREATE TABLE events (
    id uuid PRIMARY KEY,
    vendor text NOT NULL,
    transaction_id text NOT NULL,
    dedup_key text NOT NULL UNIQUE,
    state text NOT NULL,
    final boolean NOT NULL,
    delivered_at timestamptz,
    received_at timestamptz NOT NULL,
    archive_id uuid NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX events_by_transaction ON events (vendor, transaction_id, id);
CREATE INDEX events_by_state ON events (state, id);
CREATE INDEX events_finished ON events (received_at) WHERE final;

-- The first terminal outcome of a transaction: one per transaction, by its primary key. It
-- outlives its event (retention), so that a late redelivery is still recognized.
CREATE TABLE terminals (
    vendor text NOT NULL,
    transaction_id text NOT NULL,
    event_id uuid NOT NULL,
    outcome text NOT NULL,
    PRIMARY KEY (vendor, transaction_id)
);

CREATE TABLE registrations (
    vendor text NOT NULL,
    transaction_id text NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (vendor, transaction_id)
);

-- A withdrawn registration's tombstone, for workability answers.
CREATE TABLE withdrawals (
    vendor text NOT NULL,
    transaction_id text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (vendor, transaction_id)
);

-- Events waiting for their transaction's registration.
CREATE TABLE parked (
    event_id uuid PRIMARY KEY,
    vendor text NOT NULL,
    transaction_id text NOT NULL,
    since timestamptz NOT NULL
);
CREATE INDEX parked_by_transaction ON parked (vendor, transaction_id);
CREATE INDEX parked_by_age ON parked (since);

-- The job queue: one lane per party, in due order. An instance claims a job by leasing it
-- (lease_owner, lease_until); a live instance renews its leases, a dead one's run out and
-- are taken over.
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    party text NOT NULL,
    due timestamptz NOT NULL,
    lease_owner uuid,
    lease_until timestamptz,
    takeovers integer NOT NULL DEFAULT 0,
    record jsonb NOT NULL
);
CREATE INDEX jobs_lane ON jobs (party, due);

-- Keys of jobs queued once (a reloaded exit URL, a standing poller).
CREATE TABLE onces (
    key text PRIMARY KEY,
    job_id uuid NOT NULL,
    at timestamptz NOT NULL
);

CREATE TABLE dead_letters (
    id uuid PRIMARY KEY,
    at timestamptz NOT NULL,
    record jsonb NOT NULL
);

-- Callbacks that can never be processed; once per dedup_key.
CREATE TABLE quarantine (
    id uuid PRIMARY KEY,
    dedup_key text NOT NULL UNIQUE,
    received_at timestamptz NOT NULL,
    archive_id uuid NOT NULL,
    record jsonb NOT NULL
);

-- Raw payloads (up to server.body_limit_mib), in chunks of at most 1 MiB, written in the
-- transaction that records their callback: a large body is streamed in pieces, never bound as
-- one parameter, and read back the same way. Stored as they are, uncompressed (EXTERNAL): most
-- large bodies are base64 PDFs that compression barely shrinks at a high CPU cost.
CREATE TABLE payloads (
    archive_id uuid PRIMARY KEY,
    content_type text NOT NULL,
    size bigint NOT NULL
);
CREATE TABLE payload_chunks (
    archive_id uuid NOT NULL REFERENCES payloads ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (archive_id, seq)
);
ALTER TABLE payload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Each instance's last durable probe write (readiness).
CREATE TABLE probes (
    instance uuid PRIMARY KEY,
    at timestamptz NOT NULL
);
