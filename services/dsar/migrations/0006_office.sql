-- The privacy office's reads: a case's timeline is its audit entries (`ref` is the request id), the
-- weekly charts read cases by receipt and by closing time, and a search by request id or subject uses
-- the primary key and cases_subject. Kept small: the audit log is append-only and grows with every case.
CREATE INDEX audit_log_ref ON audit_log (ref);
CREATE INDEX cases_received ON cases (received_at);
CREATE INDEX cases_closed ON cases (closed_at) WHERE closed_at IS NOT NULL;
-- The queue's order (due date, then request id) for every case, so a later page of the list is an index
-- walk rather than a sort of every case.
CREATE INDEX cases_due_order ON cases (due_at, request_id);
