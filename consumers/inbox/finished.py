"""What the inbox janitor deletes of finished timers and workflow runs, and after how long.

A finished row is also the replay dedupe: arming a timer is ``ON CONFLICT DO NOTHING`` on its key
(a fired key is never armed again) and a workflow's state row is inserted the same way, so an
outcome or event read again from Kafka (retention: 7 days by default) or replayed from the DLQ
must still find it. Both are kept :data:`FINISHED_KEEP` after they ended, as the fan-out's
finished cursors are (:data:`~consumers.fanout.copies.FINISHED_FANOUT_KEEP`, same reasoning: well
past the topics' retention, the API's event id dedupe and the delivery ledger). Failed timers are
an operator's evidence (``last_error``; set back to ``pending`` to fire again): they are kept
:data:`FAILED_TIMER_KEEP`. Pending timers and running or waiting workflows are never deleted, nor
a finished workflow whose item still waits in a route's digest (the digest reads its tenant).

Each statement deletes at most ``$2`` rows it picks through the partial indexes of migration 280,
skipping rows another transaction holds.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = ["FAILED_TIMER_KEEP", "FINISHED_KEEP", "TIMERS_SQL", "WORKFLOWS_SQL"]

FINISHED_KEEP = timedelta(days=30)
FAILED_TIMER_KEEP = timedelta(days=90)

# $1: fired/cancelled cutoff, $2: batch size, $3: failed cutoff (older). The end time is the index's
# expression, the state test its predicate, word for word: the planner matches them as written.
# A cancelled timer has no fired_at: its due time is when it would have ended.
TIMERS_SQL = """
DELETE FROM herald_timers WHERE id IN (
    SELECT id FROM herald_timers
    WHERE state <> 'pending' AND coalesce(fired_at, due_at) < $1
      AND (state <> 'failed' OR coalesce(fired_at, due_at) < $3)
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""

# $1: cutoff, $2: batch size. A run's log (herald_workflow_runs) goes with its state row; the
# status counts the state rows. updated_at is when the run ended (its last state change).
WORKFLOWS_SQL = """
WITH picked AS MATERIALIZED (
    SELECT w.notification_id FROM herald_workflows w
    WHERE w.state IN ('done', 'cancelled', 'dropped') AND w.updated_at < $1
      AND NOT EXISTS (SELECT 1 FROM herald_workflow_digest_items i WHERE i.notification_id = w.notification_id)
    LIMIT $2 FOR UPDATE OF w SKIP LOCKED
), runs AS (
    DELETE FROM herald_workflow_runs WHERE notification_id IN (SELECT notification_id FROM picked)
)
DELETE FROM herald_workflows WHERE notification_id IN (SELECT notification_id FROM picked)
"""
