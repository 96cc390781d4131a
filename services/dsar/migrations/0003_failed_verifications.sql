-- Wrong identity codes per subject, across all of the subject's requests: each request allows a few
-- codes and a few guesses each, so without a cap per subject, filing many requests for someone would
-- buy many guesses at their code. Only the subject id and the time; rows older than the window are
-- deleted as they are counted, and all of a subject's rows when the subject is erased.
CREATE TABLE failed_verifications (
    subject   text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX failed_verifications_subject ON failed_verifications (subject, failed_at);
