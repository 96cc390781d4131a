-- The order commands were issued in, whatever the clock does: one subject's commands are issued one
-- transaction at a time (the subject's lock), so a later command always draws a higher number.
ALTER TABLE commands ADD COLUMN issued_seq bigserial;
