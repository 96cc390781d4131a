-- The queue is worked through in the order emails were queued (priority first), whatever their
-- retries: a temporary failure delays an email (next_attempt_at) but no longer sends it to the back
-- of the queue, behind everything queued after it. next_attempt_at is a key column so that rows
-- still backing off are skipped inside the index, without a visit to the table.
CREATE INDEX emails_queue_order ON emails (priority, created_at, next_attempt_at) WHERE status = 'queued';
DROP INDEX emails_due;
