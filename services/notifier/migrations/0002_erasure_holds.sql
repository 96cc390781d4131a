-- Erasure holds (DESIGN.md, Services): from the moment an erasure case is verified, the subject gets no
-- email but the ones about that case, even while other systems are still answering. The notifier learns
-- of it from `dsar-status` (right `erasure`): a row per held case while it is in progress or awaiting
-- systems; a rejected, cancelled (or closed, or completed: then the subject is erased) case removes its
-- row. Subject and request ids only, no PII; the subject's erasure here removes its rows too.
CREATE TABLE erasure_holds (
    subject    text NOT NULL,
    request_id text NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, request_id)
);
