-- When each subject was last active, as far as the dsar service sees it (registration, consent
-- changes, the subject's own rights requests): the subject id and a time, no PII. The retention sweep
-- (services/dsar/retention.py) opens a `retention_expired` erasure for subjects inactive past the data
-- map's `inactive_subject_retention_days`; the row is deleted when the subject is erased here.
CREATE TABLE subject_activity (
    subject              text PRIMARY KEY,
    last_activity_at     timestamptz NOT NULL,
    -- When the sweep requested erasure for this last_activity_at; newer activity clears it, so each
    -- stretch of inactivity is acted on once (an operator's rejection is not overridden every pass).
    erasure_requested_at timestamptz
);
CREATE INDEX subject_activity_due ON subject_activity (last_activity_at) WHERE erasure_requested_at IS NULL;
