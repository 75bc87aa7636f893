"""A due retry or quiet-hours deferral goes out only if the recipient still consents, and not inside quiet hours.

:func:`~consumers.scheduler.retries.plan_retry` arms a ``retry`` timer and the classifier a
``deferred_send`` timer (:func:`~consumers.scheduler.timer.deferred_timer`), each carrying the
message. When one is due, the fallback runs the same consent check as the classifier at the moment
the message would go out (a user may opt out during a backoff of hours, or a night): an opt-out
ends it as ``suppressed``/``opted_out``, quiet hours (moved later meanwhile) re-arm it at the
window's end (critical and system are never held), otherwise the message is produced to its
channel topic as armed, bytes and key unchanged.

Quiet hours end for many users at once (07:00 in a zone), so a poll's timers of these kinds fire
together (:func:`fire_releases`): one contacts query for all of them, one insert for those held
again. One that cannot be read undoes that batch; the poller then fires them one by one
(:func:`fire_retry`) and sets the bad one aside.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from consumers.classifier.consent import Verdict
from consumers.fallback.context import Contact, FallbackContext, load_contact, load_contacts
from consumers.fallback.decisions import fallback_outcome
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from consumers.scheduler.timer import KIND_DEFERRED_SEND
from schemas.models import ChannelMessage, OutcomeStatus

__all__ = ["Release", "fire_releases", "fire_retry", "held_timer", "release"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Release:
    """What a due retry or deferral comes to: its outputs, or a timer that holds it again."""

    outputs: Sequence[Output] = ()
    held: Timer | None = None


def _message(ctx: FallbackContext, timer: Timer) -> ChannelMessage:
    if timer.topic is None or timer.payload is None:
        raise ValueError(f"{timer.kind} timer {timer.key} has no topic or payload")
    return ctx.codec.decode(timer.payload, ChannelMessage)


def held_timer(timer: Timer, until: datetime) -> Timer:
    """The timer again, due when the quiet window ends (keyed by that end: a replay arms it once). Pure."""
    return Timer(
        key=f"{timer.key}:held:{until.isoformat()}",
        kind=timer.kind,
        due_at=until,
        topic=timer.topic,
        msg_key=timer.msg_key,
        payload=timer.payload,
        data=timer.data,
    )


def release(
    ctx: FallbackContext, timer: Timer, message: ChannelMessage, contact: Contact, now: datetime
) -> Release:
    """The consent check at fire time, without I/O: the contact is looked up by the caller."""
    verdict = contact.consent(
        tier=message.tier,
        category=message.category,
        channel=message.channel,
        at=now,
        quiet_channels=ctx.quiet_channels,
        opt_in=timer.data.get("opt_in") is True,
        event_type=message.event_type,
    )
    what = "deferred send" if timer.kind == KIND_DEFERRED_SEND else "retry"
    if verdict.verdict is Verdict.OPTED_OUT:
        log.info("%s of %s cancelled: user opted out", what, message.idempotency_key)
        outcome = fallback_outcome(
            message,
            OutcomeStatus.SUPPRESSED,
            now=now,
            reason="opted_out",
            detail=f"{what} not sent: user opted out of {message.category} by {message.channel.value}",
        )
        return Release([ctx.outcome_output(outcome)])
    if verdict.verdict is Verdict.HELD and verdict.until is not None:
        return Release(held=held_timer(timer, verdict.until))
    assert timer.topic is not None and timer.payload is not None  # checked by _message
    return Release([Output(timer.topic, timer.payload, timer.msg_key)])


async def fire_retry(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """One due ``retry`` or ``deferred_send`` timer (one contacts query)."""
    message = _message(ctx, timer)
    contact = await load_contact(conn, message.user_id, ctx.default_locale, message.tenant or "")
    done = release(ctx, timer, message, contact, ctx.clock.now())
    if done.held is not None:
        await ctx.scheduler.arm([done.held], conn)
    return done.outputs


async def fire_releases(
    ctx: FallbackContext, timers: Sequence[Timer], conn: asyncpg.Connection
) -> Mapping[str, Sequence[Output]]:
    """A poll's due timers of one of these kinds together: their outputs by timer key. Raises on a
    timer that cannot be read (all are undone and fire one by one through :func:`fire_retry`)."""
    messages = [_message(ctx, t) for t in timers]
    contacts = await load_contacts(conn, {(m.tenant or "", m.user_id) for m in messages}, ctx.default_locale)
    now = ctx.clock.now()
    out: dict[str, Sequence[Output]] = {}
    held: list[Timer] = []
    for timer, message in zip(timers, messages, strict=True):
        done = release(ctx, timer, message, contacts[(message.tenant or "", message.user_id)], now)
        out[timer.key] = done.outputs
        if done.held is not None:
            held.append(done.held)
    await ctx.scheduler.arm(held, conn)
    return out
