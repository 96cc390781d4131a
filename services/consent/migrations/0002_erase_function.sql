-- Erasure in one round trip: keep only proof of opt-outs (keyed hash, no subject id), remove the rest.
-- The ledger is append-only; erasure is its one legitimate removal, so the guard is lifted for it alone.
CREATE FUNCTION erase_consent_subject(p_subject text, p_digest text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    INSERT INTO opt_out_proofs (subject_digest, purpose, channel, policy_version, effective_at)
    SELECT p_digest, purpose, channel, policy_version, effective_at FROM consent_ledger
    WHERE subject = p_subject AND NOT granted ON CONFLICT DO NOTHING;
    PERFORM set_config('privacy.erasing', 'on', true);
    DELETE FROM consent_ledger WHERE subject = p_subject;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('privacy.erasing', 'off', true);
    DELETE FROM consent_state WHERE subject = p_subject;
    DELETE FROM subjects WHERE subject = p_subject;
    RETURN removed;
END $$;
