-- Ordering time of the registration a directory entry comes from (DESIGN.md, envelope): a `time` more
-- than 5 minutes ahead of arrival orders as the arrival (privacy_runtime/ordering.py), so a registration
-- stamped ahead neither outranks a later one nor undoes a rectification made after it. `registered_at`
-- keeps the time the event states. Entries from before this migration order by their stated time.
ALTER TABLE recipients ADD COLUMN registration_ordered_at timestamptz;
