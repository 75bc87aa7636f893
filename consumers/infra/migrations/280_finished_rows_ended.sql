-- herald: no transaction
-- The inbox janitor deletes finished timers and workflow runs some time after they ended
-- (consumers/inbox/finished.py): these partial indexes find the old ones without reading the
-- table, and hold nothing of the pending timers and running workflows the hot paths use. A
-- timer's end is fired_at (fired, failed) or, cancelled (no fired_at), its due time. Built
-- CONCURRENTLY: arming, firing and workflow steps go on while they build. A build that fails
-- leaves an INVALID index of that name; the DROP first makes the file safe to run again.
DROP INDEX CONCURRENTLY IF EXISTS herald_timers_ended;
CREATE INDEX CONCURRENTLY herald_timers_ended ON herald_timers ((coalesce(fired_at, due_at))) WHERE state <> 'pending';
DROP INDEX CONCURRENTLY IF EXISTS herald_workflows_ended;
CREATE INDEX CONCURRENTLY herald_workflows_ended ON herald_workflows (updated_at) WHERE state IN ('done', 'cancelled', 'dropped');
