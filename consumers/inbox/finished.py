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

from datetime import UTC, datetime, timedelta

__all__ = [
    "FAILED_TIMERS_SQL",
    "FAILED_TIMER_KEEP",
    "FINISHED_KEEP",
    "TIMERS_SQL",
    "WORKFLOWS_SQL",
    "WORKFLOW_START",
]

FINISHED_KEEP = timedelta(days=30)
FAILED_TIMER_KEEP = timedelta(days=90)

# $1: cutoff, $2: batch size. The end time is the index's expression, the state test its
# predicate, word for word: the planner matches them as written. A cancelled timer has no
# fired_at: its due time is when it would have ended. Every row of the index's range below the
# cutoff is deleted (but one another transaction holds): a batch never re-reads rows it keeps.
TIMERS_SQL = """
DELETE FROM herald_timers WHERE id IN (
    SELECT id FROM herald_timers
    WHERE state IN ('fired', 'cancelled') AND coalesce(fired_at, due_at) < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""

# $1: cutoff, $2: batch size. A failed timer sets fired_at. One whose workflow still runs or
# waits is kept: the failed step is all that says why that run stopped moving (an operator sets it
# back to pending). Failed timers are few, and their own index holds nothing else.
FAILED_TIMERS_SQL = """
DELETE FROM herald_timers WHERE id IN (
    SELECT t.id FROM herald_timers t
    WHERE t.state = 'failed' AND t.fired_at < $1
      AND NOT EXISTS (
          SELECT 1 FROM herald_workflows w
          WHERE w.notification_id = t.data->>'notification_id' AND w.state IN ('running', 'waiting')
      )
    LIMIT $2 FOR UPDATE OF t SKIP LOCKED
)
"""

# Where a sweep's first batch of WORKFLOWS_SQL starts: before every key.
WORKFLOW_START = (datetime.min.replace(tzinfo=UTC), "")

# $1: cutoff, $2: batch size, ($3, $4): the last (updated_at, notification_id) the sweep's previous
# batch deleted. A run's log (herald_workflow_runs) goes with its state row; updated_at is when the
# run ended (its last state change). A finished run whose item still waits in a route's digest is
# kept (the digest reads its tenant), and digests may wait up to a year: the keyset, not an OFFSET,
# makes each batch start where the last one stopped, so a sweep reads such rows once, not once per
# batch. Returns the deleted keys (the janitor keeps the greatest as the next batch's start).
WORKFLOWS_SQL = """
WITH picked AS MATERIALIZED (
    SELECT w.notification_id, w.updated_at FROM herald_workflows w
    WHERE w.state IN ('done', 'cancelled', 'dropped') AND w.updated_at < $1
      AND (w.updated_at, w.notification_id) > ($3, $4)
      AND NOT EXISTS (SELECT 1 FROM herald_workflow_digest_items i WHERE i.notification_id = w.notification_id)
    ORDER BY w.updated_at, w.notification_id
    LIMIT $2 FOR UPDATE OF w SKIP LOCKED
), runs AS (
    DELETE FROM herald_workflow_runs WHERE notification_id IN (SELECT notification_id FROM picked)
)
DELETE FROM herald_workflows WHERE notification_id IN (SELECT notification_id FROM picked)
RETURNING updated_at, notification_id
"""
