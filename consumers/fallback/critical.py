"""Critical tier: every channel was tried at once; check that at least one got through in time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.decisions import (
    KIND_CRITICAL_CHECK,
    counts_as_sent,
    critical_verdict,
    earliest_reach,
)
from consumers.infra.keys import derived_key
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from schemas.models import DeliveryOutcome

__all__ = ["fire_critical_check", "mark_reached", "watch_critical"]

log = logging.getLogger(__name__)


async def watch_critical(
    ctx: FallbackContext, conn: asyncpg.Connection, watched: Sequence[tuple[DeliveryOutcome, datetime]]
) -> None:
    """Record the channel outcomes of critical notifications (each with the time it was handled):
    a notification's first one arms its check, and the earliest send counts as reached. In three
    statements for a run of outcomes, whatever its size; the same rows as one by one (only
    receipts, which end a run, touch these rows in between)."""
    if not watched:
        return
    first: dict[str, tuple[DeliveryOutcome, datetime]] = {}
    for outcome, now in watched:
        first.setdefault(outcome.notification_id, (outcome, now))
    after = timedelta(seconds=ctx.settings.critical_check_after_s)
    rows = await conn.fetch(
        "INSERT INTO herald_critical_watch (notification_id, user_id, tenant, event_type, deadline) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) "
        "ON CONFLICT DO NOTHING RETURNING notification_id",
        list(first),
        [o.user_id for o, _ in first.values()],
        [_tenant(o) for o, _ in first.values()],
        [o.event_type for o, _ in first.values()],
        [o.occurred_at + after for o, _ in first.values()],
    )
    # Never before now: a consumer catching up after an outage still reads the other
    # channels' outcomes (queued behind this one) before judging.
    timers = [
        Timer(
            key=derived_key(nid, "critical_check"),
            kind=KIND_CRITICAL_CHECK,
            due_at=max(first[nid][0].occurred_at + after, first[nid][1]),
            data={"notification_id": nid},
        )
        for nid in (r["notification_id"] for r in rows)
    ]
    await ctx.scheduler.arm(timers, conn)
    reached = earliest_reach(
        (o.notification_id, o.recorded_at, o.channel.value if o.channel else None)
        for o, _ in watched
        if counts_as_sent(o.status)
    )
    if reached:
        await conn.execute(
            "UPDATE herald_critical_watch w SET first_sent_at = x.at, first_channel = x.channel "
            "FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS x(n, at, channel) "
            "WHERE w.notification_id = x.n AND (w.first_sent_at IS NULL OR w.first_sent_at > x.at)",
            list(reached),
            [at for at, _ in reached.values()],
            [channel for _, channel in reached.values()],
        )


def _tenant(outcome: DeliveryOutcome) -> str:
    """The notification's tenant ("" the default one): its message's (a channel outcome has one)."""
    return (outcome.message.tenant if outcome.message is not None else None) or ""


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
        "SELECT notification_id, user_id, tenant, event_type, deadline, first_sent_at, verdict "
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
            "critical notification %s (%s, user %s, tenant %r) reached no channel by %s",
            row["notification_id"],
            row["event_type"],
            row["user_id"],
            row["tenant"],
            row["deadline"].isoformat(),
        )
    return []
