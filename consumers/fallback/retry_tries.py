"""How many of a retried message's sends reached a provider: read from the timers that sent them.

A retry's outcome carries its message, whose ``attempt`` counts every send; the real tries (those
a provider was asked to take) and when retrying began are in the data of the ``retry`` timer that
sent it (:func:`consumers.scheduler.retries.plan_retry`). Fired timers stay in ``herald_timers``
for 30 days (the inbox janitor then deletes them: a retry's outcome comes within Kafka's retention
of its timer's firing), so one statement per run of outcomes reads them for every retried send that
failed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import asyncpg

from consumers.scheduler.retries import Tries, retry_timer_key, tries_of
from schemas.models import DeliveryOutcome, OutcomeStatus

__all__ = ["earlier_tries", "sent_by"]

_READ = "SELECT key, data FROM herald_timers WHERE namespace = $1 AND key = ANY($2::text[])"


def sent_by(outcome: DeliveryOutcome) -> str | None:
    """The key of the retry timer that sent this failed send (None for a first send). Pure."""
    message = outcome.message
    if message is None or outcome.status is not OutcomeStatus.FAILED_RETRYABLE:
        return None
    attempt = max(outcome.attempt, message.attempt)
    return retry_timer_key(message.idempotency_key, attempt) if attempt > 1 else None


async def earlier_tries(
    conn: asyncpg.Connection, namespace: str, outcomes: Iterable[DeliveryOutcome]
) -> dict[str, Tries]:
    """The tries recorded by the timers that sent these outcomes' messages, by timer key (a timer
    armed before they were recorded, or none found: absent)."""
    keys = {k for k in map(sent_by, outcomes) if k is not None}
    if not keys:
        return {}
    rows = await conn.fetch(_READ, namespace, sorted(keys))
    found = {row["key"]: tries_of(json.loads(row["data"])) for row in rows}
    return {key: tries for key, tries in found.items() if tries is not None}
