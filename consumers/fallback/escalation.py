"""High tier: the email that replaces a push that was not confirmed in time or could not be sent.

The high preset's ``escalate`` step runs on the workflow executor
(``consumers.workflow.preset_run``); :func:`escalate` is that step's body. At run time the
email passes the same consent check as a first send: a recipient who switched off email for
the category gets no escalation email (``suppressed``/``opted_out``), and one inside quiet hours
gets it when the window ends (the caller re-arms the step there). ``herald_escalations``
(keyed by the email's idempotency key) lets a push escalate once however many timers or
replays ask for it: :func:`escalate_all` writes the rows of many pushes in one statement (the
poller's batch) and sends only for those its statement inserted; :func:`escalate` is it for one.

:func:`fire_escalation` releases the ``escalate_push`` timers an older fallback consumer armed
before the executor ran this step, so an upgrade drains them instead of dropping them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from consumers.classifier.consent import Verdict
from consumers.fallback.context import Contact, FallbackContext, load_contact
from consumers.fallback.decisions import (
    escalation_email,
    escalation_email_key,
    fallback_outcome,
)
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, OutcomeStatus

__all__ = [
    "PUSH_TIMEOUT",
    "Ask",
    "Escalated",
    "Plan",
    "escalate",
    "escalate_all",
    "fire_escalation",
    "firsts",
    "has_receipt",
    "plan_escalation",
    "received_among",
]

log = logging.getLogger(__name__)
PUSH_TIMEOUT = "push_timeout"


@dataclass(slots=True)
class Escalated:
    """What escalating a push did: records to produce, or ``held_until`` (quiet hours: run it then)."""

    result: str  # email | no_address | opted_out | already | held
    outputs: list[Output] = field(default_factory=list)
    held_until: datetime | None = None


async def has_receipt(conn: asyncpg.Connection, notification_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM herald_receipts WHERE notification_id = $1)", notification_id
        )
    )


async def received_among(conn: asyncpg.Connection, notification_ids: Sequence[str]) -> set[str]:
    """Which of these notifications a receipt came for: :func:`has_receipt` for many, one look."""
    if not notification_ids:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT notification_id FROM herald_receipts WHERE notification_id = ANY($1::text[])",
        sorted(set(notification_ids)),
    )
    return {r["notification_id"] for r in rows}


@dataclass(frozen=True, slots=True)
class Ask:
    """A push to escalate: why, and its user's contact."""

    push: ChannelMessage
    reason: str
    contact: Contact


@dataclass(frozen=True, slots=True)
class Plan:
    """What escalating a push would do before its row is written: ``held_until`` (quiet hours), or
    the row's key and result (email | no_address | opted_out)."""

    key: str = ""
    result: str = ""
    held_until: datetime | None = None


def plan_escalation(ask: Ask, *, now: datetime, quiet_channels: frozenset[Channel]) -> Plan:
    """The email's consent check, as a first send's. Pure."""
    push = ask.push
    verdict = ask.contact.consent(
        tier=push.tier, category=push.category, channel=Channel.EMAIL, at=now, quiet_channels=quiet_channels
    )
    if verdict.verdict is Verdict.HELD and verdict.until is not None:
        return Plan(held_until=verdict.until)
    result = "email" if ask.contact.email else "no_address"
    if verdict.verdict is Verdict.OPTED_OUT:
        result = "opted_out"
    return Plan(escalation_email_key(push.idempotency_key), result)


def firsts(keys: Sequence[str], inserted: Collection[str]) -> list[bool]:
    """Which rows are the escalation's first: their key was inserted, and only its first occurrence
    (a statement that names a key twice inserts it once). Pure."""
    seen: set[str] = set()
    out: list[bool] = []
    for key in keys:
        out.append(key in inserted and key not in seen)
        seen.add(key)
    return out


# Every escalation row of a batch in one statement; RETURNING names the rows that were new (a
# replay finds its rows and sends nothing again).
_RECORD = """
INSERT INTO herald_escalations (escalation_key, notification_id, push_key, reason, result, created_at)
SELECT k, n, p, r, res, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS x(k, n, p, r, res)
ON CONFLICT DO NOTHING RETURNING escalation_key
"""


async def escalate_all(
    ctx: FallbackContext, conn: asyncpg.Connection, asks: Sequence[Ask]
) -> list[Escalated]:
    """Email each push's content (once per push), or say why not, or until when to wait: one
    statement writes every row (:data:`_RECORD`), whatever their number. In order of ``asks``."""
    now = ctx.clock.now()
    plans = [plan_escalation(a, now=now, quiet_channels=ctx.quiet_channels) for a in asks]
    rows = [(a, p) for a, p in zip(asks, plans, strict=True) if p.held_until is None]
    inserted: set[str] = set()
    if rows:
        found = await conn.fetch(
            _RECORD,
            [p.key for _, p in rows],
            [a.push.notification_id for a, _ in rows],
            [a.push.idempotency_key for a, _ in rows],
            [a.reason for a, _ in rows],
            [p.result for _, p in rows],
            now,
        )
        inserted = {r["escalation_key"] for r in found}
    first = iter(firsts([p.key for _, p in rows], inserted))
    out: list[Escalated] = []
    for ask, plan in zip(asks, plans, strict=True):
        if plan.held_until is not None:
            out.append(Escalated("held", held_until=plan.held_until))
        else:
            out.append(_escalated(ctx, ask, plan, first=next(first), now=now))
    return out


async def escalate(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    push: ChannelMessage,
    reason: str,
    contact: Contact | None = None,
) -> Escalated:
    """:func:`escalate_all` for one push. ``contact``: the user's, if the caller loaded it."""
    if contact is None:
        contact = await load_contact(conn, push.user_id, ctx.default_locale, push.tenant or "")
    return (await escalate_all(ctx, conn, [Ask(push, reason, contact)]))[0]


def _escalated(ctx: FallbackContext, ask: Ask, plan: Plan, *, first: bool, now: datetime) -> Escalated:
    """What a push's escalation produces once its row is written (``first``: by this call)."""
    push, reason, email_key, result = ask.push, ask.reason, plan.key, plan.result
    if not first:
        return Escalated("already")
    if result != "email":
        return Escalated(result, [ctx.outcome_output(_not_sent(push, result, reason, email_key, now))])
    email = escalation_email(push, ask.contact.email or "")
    escalated = fallback_outcome(
        email,
        OutcomeStatus.ESCALATED,
        now=now,
        reason=reason,
        detail=f"push {push.idempotency_key} → email {email_key}",
    )
    metrics.ESCALATIONS.labels(push.tier.value, reason.split(":", 1)[0]).inc()
    log.info("escalated %s to email (%s)", push.notification_id, reason)
    return Escalated("email", [ctx.email_output(email), ctx.outcome_output(escalated)])


def _not_sent(
    push: ChannelMessage, result: str, reason: str, email_key: str, now: datetime
) -> DeliveryOutcome:
    """``suppressed`` on email: the user opted out of the category by email, or has no address."""
    if result == "opted_out":
        log.info(
            "escalation of %s (%s): user opted out of %s email", push.notification_id, reason, push.category
        )
        detail = f"escalation ({reason}): user opted out of {push.category} by email"
    else:
        log.warning(
            "escalation of %s (%s): user %s has no email address", push.notification_id, reason, push.user_id
        )
        detail = f"escalation ({reason}): no email address"
    return fallback_outcome(
        push,
        OutcomeStatus.SUPPRESSED,
        now=now,
        reason=result,
        detail=detail,
        channel=Channel.EMAIL,
        key=email_key,
    )


async def fire_escalation(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due (a timer armed before the executor ran this step): escalate unless confirmed meanwhile."""
    if timer.payload is None:
        raise ValueError(f"escalation timer {timer.key} has no payload")
    push = ctx.codec.decode(timer.payload, ChannelMessage)
    reason = str(timer.data.get("reason", PUSH_TIMEOUT))
    if reason == PUSH_TIMEOUT and await has_receipt(conn, push.notification_id):
        return []
    done = await escalate(ctx, conn, push, reason)
    if done.held_until is not None:
        until = done.held_until
        held = Timer(
            f"{timer.key}:held:{until.isoformat()}", timer.kind, until, payload=timer.payload, data=timer.data
        )
        await ctx.scheduler.arm([held], conn)
    return done.outputs
