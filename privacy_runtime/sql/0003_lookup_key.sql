-- The key of this schema's keyed hashes (erasure tombstones, opt-out proofs, suppression entries).
-- Random, wrapped by the master key like a data key, so rotating the master key re-wraps it and the
-- hashes stay the same: a tombstone written before a rotation still matches after it.
CREATE TABLE lookup_key (
    id            int PRIMARY KEY CHECK (id = 1),
    wrapped_key   bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
