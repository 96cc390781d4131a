-- The decision API answers from a per-process cache of subjects' profiles and current consents
-- (services/consent/decision_cache.py). Every statement that changes what a decision reads names the
-- subjects it touched on channel '<schema>_decisions'. NOTIFY is transactional: PostgreSQL delivers
-- it only once the changing transaction has committed (never for a rollback), and to each listener in
-- the order the notifications were queued, which is before their transactions' commits.
CREATE FUNCTION notify_decision_inputs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    touched text[];
    payload text;
BEGIN
    -- Only the branch that runs is planned: each trigger declares the transition tables it reads.
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT subject) INTO touched FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT subject) INTO touched
        FROM (SELECT subject FROM new_rows UNION ALL SELECT subject FROM old_rows) t;
    ELSE
        SELECT array_agg(DISTINCT subject) INTO touched FROM old_rows;
    END IF;
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. cardinality(touched) BY 50 LOOP
        payload := array_to_json(touched[i:i + 49])::text;
        IF octet_length(payload) > 7900 THEN
            payload := '*';  -- over NOTIFY's payload limit: every listener drops its whole cache
        END IF;
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_decisions', payload);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION notify_decision_inputs_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_decisions', '*');
    RETURN NULL;
END $$;

CREATE TRIGGER subjects_decisions_insert AFTER INSERT ON subjects
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs();
CREATE TRIGGER subjects_decisions_update AFTER UPDATE ON subjects
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs();
CREATE TRIGGER subjects_decisions_delete AFTER DELETE ON subjects
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs();
CREATE TRIGGER subjects_decisions_truncate AFTER TRUNCATE ON subjects
    FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs_truncated();

CREATE TRIGGER consent_state_decisions_insert AFTER INSERT ON consent_state
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs();
CREATE TRIGGER consent_state_decisions_update AFTER UPDATE ON consent_state
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs();
CREATE TRIGGER consent_state_decisions_delete AFTER DELETE ON consent_state
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs();
CREATE TRIGGER consent_state_decisions_truncate AFTER TRUNCATE ON consent_state
    FOR EACH STATEMENT EXECUTE FUNCTION notify_decision_inputs_truncated();
