-- Housekeeping deletes deduplication records by age (privacy_runtime/housekeeping.py). BRIN: these
-- tables are appended in time order, so a tiny index finds the old end without a scan.
CREATE INDEX processed_events_by_time ON processed_events USING brin (processed_at);
CREATE INDEX handled_commands_by_time ON handled_commands USING brin (handled_at);
