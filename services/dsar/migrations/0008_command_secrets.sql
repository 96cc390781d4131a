-- Every case gets its own random key for the command ids it has yet to issue (cases.py
-- `Case.command_secret`): ids derived from the request id alone could be computed by any system that
-- sees the request id. gen_random_uuid() draws from PostgreSQL's strong random source (122 bits).
UPDATE cases SET state = jsonb_set(state, '{command_secret}',
                                   to_jsonb(replace(gen_random_uuid()::text, '-', '')))
WHERE coalesce(state->>'command_secret', '') = '';
