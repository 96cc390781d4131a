-- Notifier: its own recipient directory, the email outbox, and resumable notice fan-outs.

-- One row per subject. email and name are sealed with the subject's data key (shredded on erasure);
-- email_hash is a keyed hash for lookups by address.
CREATE TABLE recipients (
    subject       text PRIMARY KEY,
    email_sealed  bytea NOT NULL,
    name_sealed   bytea,
    email_hash    text NOT NULL,
    locale        text NOT NULL DEFAULT 'sv',
    country       text,
    restricted    boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL,
    rectified_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recipients_email_hash ON recipients (email_hash);

-- The email outbox. notification_id is the exactly-once key: a replayed request or a restarted
-- fan-out inserts nothing new. params are sealed with the subject's key.
CREATE TABLE emails (
    notification_id text PRIMARY KEY,
    subject         text NOT NULL,
    template        text NOT NULL,
    category        text NOT NULL CHECK (category IN ('transactional', 'marketing')),
    -- NULL: the recipient's own locale at the time of sending (fan-out notices).
    locale          text,
    params_sealed   bytea,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'suppressed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    last_error      text,
    sent_at         timestamptz,
    message_id      text NOT NULL,
    origin          text NOT NULL,
    -- 0: notices to one person (verification codes must not wait); 1: notices fanned out to everyone.
    priority        smallint NOT NULL DEFAULT 0,
    -- true: addressed from final_notices and params sealed with its key (the subject was erased).
    final_notice    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX emails_due ON emails (priority, next_attempt_at) WHERE status = 'queued';
CREATE INDEX emails_sending ON emails (claimed_at) WHERE status = 'sending';
CREATE INDEX emails_subject ON emails (subject);

-- A notice sent to every recipient, walked through the directory page by page (keyset on subject).
-- last_subject is the cursor: the last subject queued; a crash resumes after it.
CREATE TABLE fanout_jobs (
    job_id      text PRIMARY KEY,
    notice      text NOT NULL,
    notice_id   text NOT NULL,
    template    text NOT NULL,
    params      jsonb NOT NULL,
    last_subject text NOT NULL DEFAULT '',
    queued      integer NOT NULL DEFAULT 0,
    done        boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX fanout_jobs_open ON fanout_jobs (created_at) WHERE NOT done;

-- After an erasure: the contact kept only to send the erasure confirmation, sealed with a key of its
-- own (wrapped by the master key). Deleted once that email is sent or failed, or when it expires.
CREATE TABLE final_notices (
    subject        text PRIMARY KEY,
    request_id     uuid,
    wrapped_key    bytea NOT NULL,
    master_key_id  text NOT NULL,
    contact_sealed bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
