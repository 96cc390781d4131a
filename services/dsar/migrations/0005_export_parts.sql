-- Parts of exports answered in several messages (privacy-acks `part`/`parts`), until all are here and
-- the whole is verified against its SHA-256. Each slice is sealed with the subject's key. Keyed by the
-- digest as well: two exports of one command (a re-sent command exported twice) never mix.
CREATE TABLE export_parts (
    command_id    uuid NOT NULL,
    export_sha256 text NOT NULL,
    part          integer NOT NULL,
    parts         integer NOT NULL,
    request_id    uuid NOT NULL,
    system        text NOT NULL,
    chunk_bytes   integer NOT NULL,
    chunk_sealed  bytea NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (command_id, export_sha256, part)
);
CREATE INDEX export_parts_request ON export_parts (request_id);
