-- Runtime tables every service schema carries: idempotency, outbox, keys, audit chain.

CREATE TABLE processed_events (
    event_id     text PRIMARY KEY,
    topic        text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: rows are written in the same transaction as the state change they announce.
-- value is sealed with the subject's data key when subject is set, so erasure shreds it too.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          bytea,
    subject      text,
    value        bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE subject_keys (
    subject       text PRIMARY KEY,
    wrapped_key   bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Tombstones name no one: a keyed hash of the subject id.
CREATE TABLE erased_subjects (
    subject_digest text PRIMARY KEY,
    erased_at      timestamptz NOT NULL DEFAULT now()
);

-- Append-only, hash-chained audit trail.
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL,
    action    text NOT NULL,
    actor     text NOT NULL,
    subject   text,
    ref       text,
    detail    jsonb NOT NULL DEFAULT '{}',
    prev_hash text NOT NULL,
    hash      text NOT NULL
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
