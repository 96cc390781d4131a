-- The office keeps no case data of its own: only the runtime's tables (its outbox for the events it
-- publishes, and its audit chain of operator actions that are not a service's, such as intake and
-- dead-letter replays). This file marks the schema as the office's.
COMMENT ON SCHEMA office IS 'privacy office: outbox and audit chain of operator actions';
