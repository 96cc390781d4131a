-- Ordering time (DESIGN.md, envelope): a `time` more than 5 minutes ahead of an event's arrival counts,
-- for ordering, as its arrival time, so a clock running ahead (or a forged timestamp) never lets a grant
-- outrank a withdrawal made after it. Both are kept: `effective_at` is the time the event states (the
-- proof of consent, sealed in `row_hash`), `ordered_at` the time it orders by (computed in
-- privacy_runtime/ordering.py); `recorded_at` remains when it was written. Rows from before this
-- migration have none and order by their stated time.
ALTER TABLE consent_ledger ADD COLUMN ordered_at timestamptz;
ALTER TABLE consent_state ADD COLUMN ordered_at timestamptz;
-- The newest registration (by ordering time) gives the subject's country and source.
ALTER TABLE subjects ADD COLUMN registration_ordered_at timestamptz;
