-- Tamper evidence for the consent ledger, the proof of every consent (GDPR Art. 7(1)).
--
-- Each ledger row carries the hash of its content (`row_hash`) and the batch it was appended in
-- (`sealed_in`); each batch leaves one seal (how many rows, a digest of their hashes), written by the
-- same statement. Every minute or so the seals not anchored yet are anchored: one entry in the
-- hash-chained audit trail (`consent_ledger_anchored`) with a digest of those seals. A row changed,
-- removed or added afterwards no longer matches its seal, and a seal no longer matches its anchor:
-- `privacyctl audit verify` names them. Erasure keeps the hashes of the rows it removes (a hash
-- covers an event id, so it reveals nothing), so erased batches still verify.

CREATE FUNCTION consent_ledger_row_hash(
    p_entry_id text, p_subject text, p_purpose text, p_granted boolean, p_channel text,
    p_policy_version text, p_jurisdiction text, p_effective_at timestamptz
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(concat_ws(E'\x1f', p_entry_id, p_subject, p_purpose, p_granted::text, p_channel,
        coalesce(p_policy_version, E'\x1e'), coalesce(p_jurisdiction, E'\x1e'),
        (extract(epoch FROM p_effective_at) * 1000000)::bigint::text), 'UTF8'))
$$;

-- Rows appended before this migration have neither: they are reported as not sealed.
ALTER TABLE consent_ledger ADD COLUMN row_hash bytea, ADD COLUMN sealed_in uuid;

CREATE TABLE ledger_seals (
    batch       uuid PRIMARY KEY,
    entries     integer NOT NULL,
    digest      bytea NOT NULL,
    sealed_at   timestamptz NOT NULL DEFAULT now(),
    anchored_in uuid
);
CREATE INDEX ledger_seals_unanchored ON ledger_seals (sealed_at) WHERE anchored_in IS NULL;

CREATE TABLE erased_ledger_rows (
    sealed_in uuid NOT NULL,
    row_hash  bytea NOT NULL
);
CREATE INDEX erased_ledger_rows_batch ON erased_ledger_rows (sealed_in);

-- Erasure as in 0003, keeping the hashes of the rows it removes.
CREATE OR REPLACE FUNCTION erase_consent_subject(p_subject text, p_digest text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    INSERT INTO opt_out_proofs (subject_digest, purpose, channel, policy_version, effective_at)
    SELECT p_digest, purpose, channel, policy_version, effective_at FROM consent_ledger
    WHERE subject = p_subject AND NOT granted ON CONFLICT DO NOTHING;
    INSERT INTO erased_ledger_rows (sealed_in, row_hash)
    SELECT sealed_in, row_hash FROM consent_ledger WHERE subject = p_subject AND sealed_in IS NOT NULL;
    PERFORM set_config('privacy.erasing', 'on', true);
    DELETE FROM consent_ledger WHERE subject = p_subject;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM registrations WHERE subject = p_subject;
    PERFORM set_config('privacy.erasing', 'off', true);
    DELETE FROM consent_state WHERE subject = p_subject;
    DELETE FROM subjects WHERE subject = p_subject;
    RETURN removed;
END $$;
