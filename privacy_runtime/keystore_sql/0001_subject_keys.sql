-- The wrapped per-subject data keys, in the key store (KEYSTORE_DATABASE_URL) when it is a database of
-- its own: kept apart from the ciphertext they open, so the key store's backups can be kept short and
-- an erasure is final once they have aged out (docs/operations.md, "Shred horizon"). Same layout as
-- the runtime's 0001; IF NOT EXISTS, so a key store that is the main database after all changes nothing.
CREATE TABLE IF NOT EXISTS subject_keys (
    subject       text PRIMARY KEY,
    wrapped_key   bytea NOT NULL,
    master_key_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
