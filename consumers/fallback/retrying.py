"""A due retry goes out only if the recipient still consents, and not inside quiet hours.

:func:`~consumers.scheduler.retries.plan_retry` arms a ``retry`` timer carrying the message;
this fire handler runs the same consent check as the classifier at the moment the retry would
go out (a user may opt out during a backoff of hours): an opt-out ends it as
``suppressed``/``opted_out``, quiet hours re-arm it at the window's end (critical and system
are never held), otherwise the message is produced to its channel topic as planned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from consumers.classifier.consent import Verdict
from consumers.fallback.context import FallbackContext, load_contact
from consumers.fallback.decisions import fallback_outcome
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from schemas.models import ChannelMessage, OutcomeStatus

__all__ = ["fire_retry"]

log = logging.getLogger(__name__)


async def fire_retry(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    if timer.topic is None or timer.payload is None:
        raise ValueError(f"retry timer {timer.key} has no topic or payload")
    message = ctx.codec.decode(timer.payload, ChannelMessage)
    now = ctx.clock.now()
    contact = await load_contact(conn, message.user_id, ctx.default_locale, message.tenant or "")
    verdict = contact.consent(
        tier=message.tier,
        category=message.category,
        channel=message.channel,
        at=now,
        quiet_channels=ctx.quiet_channels,
    )
    if verdict.verdict is Verdict.OPTED_OUT:
        log.info("retry of %s cancelled: user opted out", message.idempotency_key)
        outcome = fallback_outcome(
            message,
            OutcomeStatus.SUPPRESSED,
            now=now,
            reason="opted_out",
            detail=f"retry not sent: user opted out of {message.category} by {message.channel.value}",
        )
        return [ctx.outcome_output(outcome)]
    if verdict.verdict is Verdict.HELD and verdict.until is not None:
        await _hold(ctx, conn, timer, verdict.until)
        return []
    return [Output(timer.topic, timer.payload, timer.msg_key)]


async def _hold(ctx: FallbackContext, conn: asyncpg.Connection, timer: Timer, until: datetime) -> None:
    held = Timer(
        key=f"{timer.key}:held:{until.isoformat()}",
        kind=timer.kind,
        due_at=until,
        topic=timer.topic,
        msg_key=timer.msg_key,
        payload=timer.payload,
        data=timer.data,
    )
    await ctx.scheduler.arm([held], conn)
