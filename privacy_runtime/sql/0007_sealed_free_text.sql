-- Free text that may name a person, sealed with the subject's key so erasure shreds it (DESIGN.md,
-- "Storage and security"). `sealed_notes`: texts an audit entry refers to by the SHA-256 of their
-- ciphertext (the chain hashes that digest, so it still verifies once the text can no longer be read).
CREATE TABLE sealed_notes (
    sha256     text PRIMARY KEY,
    subject    text NOT NULL,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sealed_notes_subject ON sealed_notes (subject);

-- A system's own words in its answer (`privacy-acks.detail`), sealed; `ack_detail` is no longer written.
ALTER TABLE commands ADD COLUMN ack_detail_sealed bytea;
-- Details written in plaintext before cannot be sealed here (no key in SQL) and may name a subject erased
-- since: they go. Nothing ever showed them; the answers' statuses stay.
UPDATE commands SET ack_detail = NULL WHERE ack_detail IS NOT NULL;
