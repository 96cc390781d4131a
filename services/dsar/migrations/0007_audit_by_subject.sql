-- The privacy center shows a person each of their cases' timeline, read from the audit trail by subject.
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, seq) WHERE subject IS NOT NULL;
