-- herald: no transaction
-- Erasure's (tenant, user) lookups of critical checks (migration 262), user id first as in
-- migration 261. Built CONCURRENTLY: the table's writes (a receipt marking a check reached, a new
-- check) go on while it builds. A build that fails leaves an INVALID index of that name; the
-- DROP first makes the file safe to run again.
DROP INDEX CONCURRENTLY IF EXISTS herald_critical_watch_user;
CREATE INDEX CONCURRENTLY herald_critical_watch_user ON herald_critical_watch (user_id, tenant);
