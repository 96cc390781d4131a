-- Commands this service sent to downstream systems, tracked until acknowledged.
CREATE TABLE commands (
    command_id       uuid PRIMARY KEY,
    subject          text NOT NULL,
    system           text NOT NULL,
    action           text NOT NULL,
    purpose          text,
    request_id       uuid,
    fields_sealed    bytea,
    respond_by       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 1,
    next_attempt_at  timestamptz NOT NULL,
    acked_at         timestamptz,
    ack_status       text,
    ack_detail       text,
    overdue_reported boolean NOT NULL DEFAULT false
);
CREATE INDEX commands_outstanding ON commands (next_attempt_at) WHERE acked_at IS NULL;
CREATE INDEX commands_by_request ON commands (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX commands_by_subject ON commands (subject);

-- Commands this service received as a downstream system, so a re-sent command is answered again
-- with the same outcome instead of being applied twice.
CREATE TABLE handled_commands (
    command_id uuid PRIMARY KEY,
    action     text NOT NULL,
    status     text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now()
);
