-- Timers belong to one deployment: the topic prefix of the processes that armed them. Two
-- deployments sharing a database (staging beside production, or parallel test runs) never release
-- each other's timers into their own topics. Existing rows belong to the default namespace ''.
ALTER TABLE herald_timers ADD COLUMN namespace text NOT NULL DEFAULT '';
ALTER TABLE herald_timers DROP CONSTRAINT herald_timers_key_key;
ALTER TABLE herald_timers ADD CONSTRAINT herald_timers_namespace_key UNIQUE (namespace, key);
DROP INDEX herald_timers_due;
CREATE INDEX herald_timers_due ON herald_timers (namespace, due_at) WHERE state = 'pending';
