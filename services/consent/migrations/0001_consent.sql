-- Consent ledger (append-only), current state per subject and purpose, and the subject facts
-- decisions need. No contact details are kept here: the consent service does not need them.

CREATE TABLE subjects (
    subject                  text PRIMARY KEY,
    country                  text,
    minor                    boolean NOT NULL DEFAULT false,
    registration_source      text,
    parent_account           text,
    registered_at            timestamptz,
    restricted               boolean NOT NULL DEFAULT false,
    restriction_circumstance text,
    objections               text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE consent_ledger (
    id             bigserial PRIMARY KEY,
    entry_id       text NOT NULL UNIQUE,
    subject        text NOT NULL,
    purpose        text NOT NULL,
    granted        boolean NOT NULL,
    channel        text NOT NULL,
    policy_version text,
    jurisdiction   text,
    effective_at   timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_ledger_subject ON consent_ledger (subject, effective_at);

CREATE FUNCTION consent_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Erasure is the one legitimate removal; it runs with privacy.erasing set.
    IF current_setting('privacy.erasing', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_ledger is append-only';
END $$;
CREATE TRIGGER consent_ledger_no_update BEFORE UPDATE OR DELETE ON consent_ledger
    FOR EACH ROW EXECUTE FUNCTION consent_ledger_append_only();

CREATE TABLE consent_state (
    subject        text NOT NULL,
    purpose        text NOT NULL,
    granted        boolean NOT NULL,
    channel        text NOT NULL,
    policy_version text,
    effective_at   timestamptz NOT NULL,
    entry_id       text NOT NULL,
    PRIMARY KEY (subject, purpose)
);

-- What survives an erasure: proof that an opt-out was given, naming no one (keyed hash).
CREATE TABLE opt_out_proofs (
    subject_digest text NOT NULL,
    purpose        text NOT NULL,
    channel        text NOT NULL,
    policy_version text,
    effective_at   timestamptz NOT NULL,
    PRIMARY KEY (subject_digest, purpose, effective_at)
);
