"""Critical tier: every channel was tried at once; check that at least one got through in time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.decisions import KIND_CRITICAL_CHECK, counts_as_sent, critical_verdict
from consumers.infra.keys import derived_key
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from schemas.models import DeliveryOutcome

__all__ = ["fire_critical_check", "mark_reached", "watch_critical"]

log = logging.getLogger(__name__)


async def watch_critical(
    ctx: FallbackContext, conn: asyncpg.Connection, outcome: DeliveryOutcome, now: datetime
) -> None:
    """Record a channel outcome of a critical notification; the first one arms the check."""
    deadline = outcome.occurred_at + timedelta(seconds=ctx.settings.critical_check_after_s)
    inserted = await conn.fetchval(
        "INSERT INTO herald_critical_watch (notification_id, user_id, event_type, deadline) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        outcome.notification_id,
        outcome.user_id,
        outcome.event_type,
        deadline,
    )
    if inserted:
        # Never before now: a consumer catching up after an outage still reads the other
        # channels' outcomes (queued behind this one) before judging.
        timer = Timer(
            key=derived_key(outcome.notification_id, "critical_check"),
            kind=KIND_CRITICAL_CHECK,
            due_at=max(deadline, now),
            data={"notification_id": outcome.notification_id},
        )
        await ctx.scheduler.arm([timer], conn)
    if counts_as_sent(outcome.status):
        await mark_reached(
            conn,
            outcome.notification_id,
            outcome.recorded_at,
            outcome.channel.value if outcome.channel else None,
        )


async def mark_reached(
    conn: asyncpg.Connection, notification_id: str, at: datetime, channel: str | None
) -> None:
    await conn.execute(
        "UPDATE herald_critical_watch SET first_sent_at = $2, first_channel = $3 "
        "WHERE notification_id = $1 AND (first_sent_at IS NULL OR first_sent_at > $2)",
        notification_id,
        at,
        channel,
    )


async def fire_critical_check(
    ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection
) -> Sequence[Output]:
    row = await conn.fetchrow(
        "SELECT notification_id, user_id, event_type, deadline, first_sent_at, verdict "
        "FROM herald_critical_watch "
        "WHERE notification_id = $1 FOR UPDATE",
        timer.data["notification_id"],
    )
    if row is None or row["verdict"] is not None:
        return []
    reached = critical_verdict(row["deadline"], row["first_sent_at"])
    await conn.execute(
        "UPDATE herald_critical_watch SET verdict = $2, checked_at = $3 WHERE notification_id = $1",
        row["notification_id"],
        "delivered" if reached else "undelivered",
        ctx.clock.now(),
    )
    if not reached:
        metrics.CRITICAL_UNDELIVERED.inc()
        log.error(
            "critical notification %s (%s, user %s) reached no channel by %s",
            row["notification_id"],
            row["event_type"],
            row["user_id"],
            row["deadline"].isoformat(),
        )
    return []
