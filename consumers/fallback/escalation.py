"""High tier: a push that is not confirmed in time, or cannot be sent at all, becomes an email.

Both paths go through a timer (the at-once path is due immediately), so one transactional
fire handler decides, and ``herald_escalations`` (keyed by the email's idempotency key)
lets a push escalate once however many timers or replays ask for it. At fire time the email
passes the same consent check as a first send: a recipient who switched off email for the
category gets no escalation email (``suppressed``/``opted_out``), and one inside quiet hours
gets it when the window ends (the timer is re-armed there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from consumers.classifier.consent import Verdict
from consumers.fallback.context import FallbackContext, load_contact
from consumers.fallback.decisions import (
    KIND_ESCALATE,
    escalation_email,
    escalation_email_key,
    escalation_timer_key,
    fallback_outcome,
)
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from schemas.models import Channel, ChannelMessage, OutcomeStatus

__all__ = ["PUSH_TIMEOUT", "arm_escalation", "cancel_escalations", "fire_escalation"]

log = logging.getLogger(__name__)
PUSH_TIMEOUT = "push_timeout"


async def arm_escalation(
    ctx: FallbackContext, conn: asyncpg.Connection, push: ChannelMessage, *, reason: str, now: datetime
) -> bool:
    """Arm the escalation of ``push``: after the configured delay (timeout) or at once (failure)."""
    immediate = reason != PUSH_TIMEOUT
    if not immediate and await _has_receipt(conn, push.notification_id):
        return False  # the receipt overtook the push's own outcome: nothing to wait for
    key = escalation_timer_key(push.idempotency_key, immediate=immediate)
    delay = 0.0 if immediate else ctx.settings.high_escalation_delay_s
    timer = Timer(
        key=key,
        kind=KIND_ESCALATE,
        due_at=now + timedelta(seconds=delay),
        payload=ctx.codec.encode(push),
        data={"notification_id": push.notification_id, "reason": reason},
    )
    await conn.execute(
        "INSERT INTO herald_escalation_watch (timer_key, notification_id, push_key, armed_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        key,
        push.notification_id,
        push.idempotency_key,
        now,
    )
    return await ctx.scheduler.arm([timer], conn) == 1


async def cancel_escalations(ctx: FallbackContext, conn: asyncpg.Connection, notification_id: str) -> int:
    """A receipt arrived: the timeout timers of this notification will never escalate."""
    keys = [
        r["timer_key"]
        for r in await conn.fetch(
            "SELECT timer_key FROM herald_escalation_watch WHERE notification_id = $1", notification_id
        )
    ]
    cancelled = 0
    for key in keys:
        cancelled += await ctx.scheduler.cancel(key, conn)
    return cancelled


async def _has_receipt(conn: asyncpg.Connection, notification_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM herald_receipts WHERE notification_id = $1)", notification_id
        )
    )


async def fire_escalation(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due: email the push's content unless it was confirmed meanwhile or already escalated."""
    if timer.payload is None:
        raise ValueError(f"escalation timer {timer.key} has no payload")
    push = ctx.codec.decode(timer.payload, ChannelMessage)
    reason = str(timer.data.get("reason", PUSH_TIMEOUT))
    # Cancelling races the poller: a receipt committed after this row was locked is checked here.
    if reason == PUSH_TIMEOUT and await _has_receipt(conn, push.notification_id):
        return []
    now = ctx.clock.now()
    contact = await load_contact(conn, push.user_id, ctx.default_locale, push.tenant or "")
    verdict = contact.consent(
        tier=push.tier,
        category=push.category,
        channel=Channel.EMAIL,
        at=now,
        quiet_channels=ctx.quiet_channels,
    )
    if verdict.verdict is Verdict.HELD and verdict.until is not None:
        await _hold(ctx, conn, timer, verdict.until)
        return []
    email_key = escalation_email_key(push.idempotency_key)
    result = "email" if contact.email else "no_address"
    if verdict.verdict is Verdict.OPTED_OUT:
        result = "opted_out"
    first = await conn.fetchval(
        "INSERT INTO herald_escalations "
        "(escalation_key, notification_id, push_key, reason, result, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
        email_key,
        push.notification_id,
        push.idempotency_key,
        reason,
        result,
        now,
    )
    if not first:
        return []
    label = reason.split(":", 1)[0]
    if result == "opted_out":
        log.info(
            "escalation of %s (%s): user opted out of %s email", push.notification_id, reason, push.category
        )
        opted_out = fallback_outcome(
            push,
            OutcomeStatus.SUPPRESSED,
            now=now,
            reason="opted_out",
            detail=f"escalation ({reason}): user opted out of {push.category} by email",
            channel=Channel.EMAIL,
            key=email_key,
        )
        return [ctx.outcome_output(opted_out)]
    if contact.email is None:
        log.warning(
            "escalation of %s (%s): user %s has no email address", push.notification_id, reason, push.user_id
        )
        suppressed = fallback_outcome(
            push,
            OutcomeStatus.SUPPRESSED,
            now=now,
            reason="no_address",
            detail=f"escalation ({reason}): no email address",
            channel=Channel.EMAIL,
            key=email_key,
        )
        return [ctx.outcome_output(suppressed)]
    email = escalation_email(push, contact.email)
    escalated = fallback_outcome(
        email,
        OutcomeStatus.ESCALATED,
        now=now,
        reason=reason,
        detail=f"push {push.idempotency_key} → email {email_key}",
    )
    metrics.ESCALATIONS.labels(push.tier.value, label).inc()
    log.info("escalated %s to email (%s)", push.notification_id, reason)
    return [ctx.email_output(email), ctx.outcome_output(escalated)]


async def _hold(ctx: FallbackContext, conn: asyncpg.Connection, timer: Timer, until: datetime) -> None:
    """Quiet hours: the same escalation, due when the window ends (a new key per hold, so it arms)."""
    held = Timer(
        key=f"{timer.key}:held:{until.isoformat()}",
        kind=timer.kind,
        due_at=until,
        payload=timer.payload,
        data=timer.data,
    )
    if await ctx.scheduler.arm([held], conn):
        await conn.execute(
            "INSERT INTO herald_escalation_watch (timer_key, notification_id, push_key, armed_at) "
            "SELECT $1, notification_id, push_key, armed_at FROM herald_escalation_watch WHERE timer_key = $2 "
            "ON CONFLICT DO NOTHING",
            held.key,
            timer.key,
        )
