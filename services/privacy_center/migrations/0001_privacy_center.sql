-- Privacy center: sign-in links, sessions, and the forms a person submitted (idempotency records).

-- A sign-in link's token is random; only its hash is kept. Used once, within its lifetime.
CREATE TABLE sign_in_links (
    token_hash text PRIMARY KEY,
    subject    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX sign_in_links_expiry ON sign_in_links (expires_at);

-- Signed-in sessions, so a sign-out (or an idle half hour) ends a session for good, cookie or not.
CREATE TABLE sessions (
    sid_hash   text PRIMARY KEY,
    subject    text NOT NULL,
    via        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz
);
CREATE INDEX sessions_seen ON sessions (last_seen);

-- One row per submitted form (its hidden `submission` id): a second submit of the same form finds the
-- row and publishes nothing more. note_sealed: what the person wrote, sealed with their key.
CREATE TABLE submissions (
    submission_id uuid PRIMARY KEY,
    subject       text NOT NULL,
    kind          text NOT NULL,
    request_id    uuid,
    note_sealed   bytea,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submissions_subject ON submissions (subject, created_at);
