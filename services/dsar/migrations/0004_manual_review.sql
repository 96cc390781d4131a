-- Cases waiting for an operator (manual_review): few rows, read often. The deadline timer counts them
-- (closed ones too: a completed restriction whose lift failed) without reading every closed case, and
-- a subject's cases in review are found by subject.
CREATE INDEX cases_manual_review ON cases (subject) WHERE manual_review;
