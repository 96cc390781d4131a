-- Every user-registered, kept as it came (source of the data, country, parent account), append-only:
-- `subjects` holds only the newest registration's facts, which a later one overwrites.
CREATE TABLE registrations (
    event_id       text PRIMARY KEY,
    subject        text NOT NULL,
    source         text,
    country        text,
    parent_account text,
    registered_at  timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registrations_subject ON registrations (subject, registered_at);
CREATE TRIGGER registrations_no_update BEFORE UPDATE OR DELETE ON registrations
    FOR EACH ROW EXECUTE FUNCTION consent_ledger_append_only();

-- Erasure removes the registrations too (the rest as in 0002).
CREATE OR REPLACE FUNCTION erase_consent_subject(p_subject text, p_digest text) RETURNS bigint
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
    DELETE FROM registrations WHERE subject = p_subject;
    PERFORM set_config('privacy.erasing', 'off', true);
    DELETE FROM consent_state WHERE subject = p_subject;
    DELETE FROM subjects WHERE subject = p_subject;
    RETURN removed;
END $$;
