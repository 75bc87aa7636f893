"""One lock order for the state rows (``herald_workflows``) a fallback batch writes.

The poller's batch of preset steps locks its notifications' state rows in ``notification_id``
order (:mod:`consumers.workflow.preset_batch`), before any other row a poll's timers lock (a
critical watch's, :func:`consumers.fallback.critical.fire_critical_check`). A fallback batch writes
state rows too: a receipt ends a wait (:func:`consumers.workflow.executor.workflow_receipt`), an
outcome enters a preset step (:func:`consumers.workflow.preset_run.enter_all`, an upsert that locks
a row already there), in batch order, across the runs of outcomes and receipts of one transaction
and after a run's critical watches. Taken in that order, a receipt for B then one for A against a
poll of A and B deadlock, and so does a critical outcome for B then a push for A against a poll
that holds A's state row and checks B's watch: PostgreSQL aborts one, the fallback's batch is
retried as an outage (nothing lost, a back-off spent). So the batch first locks every state row it
writes, in the same order, in one statement, before anything else; what it takes later it already
holds.

The critical watch rows (``herald_critical_watch``) come next, in the same order, for the same
reason: a batch marks a watch reached for each receipt (and each critical send of a run), in batch
order, while a poll checks its due watches; receipts for y then x against a poll that checked x
and waits for y deadlock. So the batch locks every watch row it may write right after the state
rows (:func:`lock_watches`), and the poller checks a poll's watches together, locked in the same
order (:func:`consumers.fallback.critical.fire_critical_checks`), after its preset steps' state rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import asyncpg

from consumers.fallback.decisions import (
    Action,
    decide_outcome,
    escalates_on_exhaustion,
    receipt_cancels,
    watches_critical,
)
from consumers.workflow.steps import Step
from schemas.models import ChannelMessage, DeliveryOutcome, OutcomeStatus, Receipt

__all__ = ["enters_step", "lock_states", "lock_watches", "state_rows", "watch_rows"]

# The actions of decide_outcome that enter a preset step (FallbackHandler._outcome).
_ENTERING = frozenset({Action.ARM_ESCALATION, Action.ESCALATE_NOW, Action.ARM_DIGEST_ITEM})

_LOCK = """
SELECT 1 FROM herald_workflows WHERE notification_id = ANY($1::text[]) ORDER BY notification_id FOR UPDATE
"""
_LOCK_WATCHES = """
SELECT 1 FROM herald_critical_watch WHERE notification_id = ANY($1::text[]) ORDER BY notification_id FOR UPDATE
"""


def enters_step(outcome: DeliveryOutcome, steps: Sequence[Step], *, custom: bool) -> bool:
    """Whether the fallback consumer may write this outcome's state row: the decision its handler
    makes (a route with its own steps only retries; a retry enters the escalate step only when it
    ran out, so any retry of a route that escalates on exhaustion counts). Pure."""
    message = outcome.message
    if message is None or custom:
        return False
    if outcome.status is OutcomeStatus.FAILED_RETRYABLE:
        return escalates_on_exhaustion(message, steps)
    return any(a in _ENTERING for a in decide_outcome(outcome, steps))


def state_rows(
    signals: Iterable[DeliveryOutcome | Receipt],
    steps: Callable[[ChannelMessage], Sequence[Step]],
    custom: Callable[[str], bool],
) -> list[str]:
    """The notifications whose state row a batch of these may write, in lock order: every
    receipt's, and every outcome's that enters a preset step (:func:`enters_step`; ``steps``: the
    workflow of a message's route, ``custom``: whether an event type's route has its own steps).
    Pure when those are."""
    return sorted(
        {
            s.notification_id
            for s in signals
            if isinstance(s, Receipt)
            or (s.message is not None and enters_step(s, steps(s.message), custom=custom(s.event_type)))
        }
    )


async def lock_states(conn: asyncpg.Connection, notification_ids: Sequence[str]) -> None:
    """Lock these state rows (those that exist) in ``notification_id`` order, one statement. Even
    one row: what the batch locks after it (a critical watch) must come after every state row."""
    if notification_ids:
        await conn.execute(_LOCK, list(notification_ids))


def watch_rows(signals: Iterable[DeliveryOutcome | Receipt], custom: Callable[[str], bool]) -> list[str]:
    """The notifications whose critical watch a batch of these may write, in lock order: every
    receipt's that marks a watch reached, every critical outcome's the handler watches (``custom``:
    whether an event type's route has its own steps, which the watch leaves out). Pure when it is."""
    return sorted(
        {
            s.notification_id
            for s in signals
            if (
                receipt_cancels(s.status)
                if isinstance(s, Receipt)
                else watches_critical(s) and not custom(s.event_type)
            )
        }
    )


async def lock_watches(conn: asyncpg.Connection, notification_ids: Sequence[str]) -> None:
    """Lock these critical watch rows (those that exist) in ``notification_id`` order, one
    statement, after the state rows (:func:`lock_states`)."""
    if notification_ids:
        await conn.execute(_LOCK_WATCHES, list(notification_ids))
