-- herald: no transaction
-- The inbox janitor deletes finished timers and workflow runs some time after they ended
-- (consumers/inbox/finished.py): these partial indexes find the old ones without reading the
-- table, and hold nothing of the pending timers and running workflows the hot paths use. A
-- timer's end is fired_at (fired) or, cancelled (no fired_at), its due time; failed timers (kept
-- longer) have an index of their own, so neither range holds rows its sweep must keep. A
-- workflow's index is in (updated_at, notification_id) order: the janitor's keyset. Built
-- CONCURRENTLY: arming, firing and workflow steps go on while they build. A build that fails
-- leaves an INVALID index of that name; the DROP first makes the file safe to run again.
DROP INDEX CONCURRENTLY IF EXISTS herald_timers_ended;
CREATE INDEX CONCURRENTLY herald_timers_ended ON herald_timers ((coalesce(fired_at, due_at))) WHERE state IN ('fired', 'cancelled');
DROP INDEX CONCURRENTLY IF EXISTS herald_timers_failed;
CREATE INDEX CONCURRENTLY herald_timers_failed ON herald_timers (fired_at) WHERE state = 'failed';
DROP INDEX CONCURRENTLY IF EXISTS herald_workflows_ended;
CREATE INDEX CONCURRENTLY herald_workflows_ended ON herald_workflows (updated_at, notification_id) WHERE state IN ('done', 'cancelled', 'dropped');
