"""Critical tier: every channel was tried at once; check that at least one got through in time."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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

__all__ = ["fire_critical_check", "fire_critical_checks", "mark_reached", "relock_watches", "watch_critical"]

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


_CHECK = (
    "SELECT notification_id, user_id, tenant, event_type, deadline, first_sent_at, verdict "
    "FROM herald_critical_watch WHERE notification_id = ANY($1::text[]) ORDER BY notification_id FOR UPDATE"
)


async def fire_critical_check(
    ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection
) -> Sequence[Output]:
    """One due check (a poll's fire together through :func:`fire_critical_checks`)."""
    await _check(ctx, conn, [timer])
    return []


async def fire_critical_checks(
    ctx: FallbackContext, timers: Sequence[Timer], conn: asyncpg.Connection
) -> Mapping[str, Sequence[Output]]:
    """A poll's due checks together: their rows locked in ``notification_id`` order, as a fallback
    batch locks them (:mod:`consumers.fallback.locking`), not one by one in due order."""
    await _check(ctx, conn, timers)
    return {t.key: [] for t in timers}


async def relock_watches(timers: Sequence[Timer], conn: asyncpg.Connection) -> None:
    """The rows :func:`fire_critical_checks` locked, locked again in its order once the poller
    undid it (its timers then fire one by one, in due order)."""
    await conn.execute(_CHECK, sorted({str(t.data["notification_id"]) for t in timers}))


async def _check(ctx: FallbackContext, conn: asyncpg.Connection, timers: Sequence[Timer]) -> None:
    rows = await conn.fetch(_CHECK, sorted({str(t.data["notification_id"]) for t in timers}))
    now = ctx.clock.now()
    judged = [(r, critical_verdict(r["deadline"], r["first_sent_at"])) for r in rows if r["verdict"] is None]
    if not judged:
        return
    await conn.execute(
        "UPDATE herald_critical_watch w SET verdict = x.verdict, checked_at = $3 "
        "FROM unnest($1::text[], $2::text[]) AS x(n, verdict) WHERE w.notification_id = x.n",
        [r["notification_id"] for r, _ in judged],
        ["delivered" if reached else "undelivered" for _, reached in judged],
        now,
    )
    for row, reached in judged:
        if reached:
            continue
        metrics.CRITICAL_UNDELIVERED.inc()
        log.error(
            "critical notification %s (%s, user %s, tenant %r) reached no channel by %s",
            row["notification_id"],
            row["event_type"],
            row["user_id"],
            row["tenant"],
            row["deadline"].isoformat(),
        )
