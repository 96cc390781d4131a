-- DSAR cases, identity verification, export fragments and packages, and the dsar service's own
-- restriction flags. Columns beside `state` are copies for queries (status, deadlines, subject).
-- No plaintext PII: correction values, fragments and packages are sealed with the subject's key.

CREATE TABLE cases (
    request_id         uuid PRIMARY KEY,
    subject            text NOT NULL,
    case_right         text NOT NULL,
    status             text NOT NULL,
    received_at        timestamptz NOT NULL,
    due_at             timestamptz NOT NULL,
    closed_at          timestamptz,
    manual_review      boolean NOT NULL DEFAULT false,
    -- The whole Case value (services/dsar/cases.py) as JSON: plan, answers, extension, reasons.
    state              jsonb NOT NULL,
    corrections_sealed bytea,
    overdue_reported   boolean NOT NULL DEFAULT false,
    due_soon_reported  boolean NOT NULL DEFAULT false,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_open ON cases (due_at) WHERE closed_at IS NULL;
CREATE INDEX cases_subject ON cases (subject);
CREATE INDEX cases_status ON cases (status, received_at);

-- One-time identity codes: only an HMAC of the code is kept.
CREATE TABLE verifications (
    request_id   uuid PRIMARY KEY REFERENCES cases (request_id),
    code_hash    text NOT NULL,
    expires_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    codes_issued integer NOT NULL DEFAULT 1,
    locked_at    timestamptz,
    verified_at  timestamptz
);

-- Export fragments as systems send them, until the package is assembled.
CREATE TABLE export_fragments (
    request_id      uuid NOT NULL,
    system          text NOT NULL,
    status          text NOT NULL,
    fragment_sealed bytea,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, system)
);

-- Assembled packages: the download token is stored only as its SHA-256.
CREATE TABLE exports (
    token_hash       text PRIMARY KEY,
    request_id       uuid NOT NULL,
    subject          text NOT NULL,
    media_type       text NOT NULL,
    filename         text NOT NULL,
    package_sealed   bytea NOT NULL,
    expires_at       timestamptz NOT NULL,
    downloads_left   integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_download_at timestamptz
);
CREATE INDEX exports_subject ON exports (subject);

-- The dsar service as a downstream system: subjects whose case records are restricted (Art. 18).
CREATE TABLE restrictions (
    subject    text PRIMARY KEY,
    since      timestamptz NOT NULL DEFAULT now()
);
