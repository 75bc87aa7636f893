"""One lock order for the state rows (``herald_workflows``) a fallback batch writes.

The poller's batch of preset steps locks its notifications' state rows in ``notification_id``
order (:mod:`consumers.workflow.preset_batch`). A fallback batch writes state rows too: a receipt
ends a wait (:func:`consumers.workflow.executor.workflow_receipt`), an outcome enters a preset step
(:func:`consumers.workflow.preset_run.enter_all`, an upsert that locks a row already there), in
batch order and across the runs of outcomes and receipts of one transaction. Taken in that order,
a receipt for B then one for A against a poll of A and B deadlock: PostgreSQL aborts one, the
fallback's batch is retried as an outage (nothing lost, a back-off spent). So the batch first
locks every state row it may write, in the same order, in one statement; what it takes later it
already holds.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from schemas.models import DeliveryOutcome, OutcomeStatus, Receipt

__all__ = ["lock_states", "state_rows"]

# The outcomes that may enter a preset step (decisions.decide_outcome, and a retry that ran out).
_ENTERING = frozenset({OutcomeStatus.SENT, OutcomeStatus.FAILED_PERMANENT, OutcomeStatus.FAILED_RETRYABLE})

_LOCK = """
SELECT 1 FROM herald_workflows WHERE notification_id = ANY($1::text[]) ORDER BY notification_id FOR UPDATE
"""


def state_rows(signals: Iterable[DeliveryOutcome | Receipt]) -> list[str]:
    """The notifications whose state row a batch of these may write, in lock order: every
    receipt's, and every outcome's that may enter a preset step. Pure."""
    return sorted(
        {
            s.notification_id
            for s in signals
            if isinstance(s, Receipt)
            or (s.message is not None and s.message.escalated_from is None and s.status in _ENTERING)
        }
    )


async def lock_states(conn: asyncpg.Connection, notification_ids: list[str]) -> None:
    """Lock these state rows (those that exist) in ``notification_id`` order. One row cannot be
    taken out of order: nothing to do for fewer than two."""
    if len(notification_ids) > 1:
        await conn.execute(_LOCK, notification_ids)
