"""What the fallback consumer does about an outcome, a receipt or a due timer: pure functions.

No clock, no database, no broker: ``now`` and every looked-up fact come in as arguments, so
each rule is a table in ``tests/unit/consumers/fallback/test_decisions.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from consumers.classifier.consent import DIGEST_EVENT_TYPE
from consumers.infra.keys import derived_key, notification_id, outcome_id
from consumers.workflow.presets import digest_after, escalation_after
from consumers.workflow.steps import Step
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, ReceiptStatus, Tier

__all__ = [
    "DIGEST_EVENT_TYPE",
    "KIND_CRITICAL_CHECK",
    "KIND_DIGEST_ITEM",
    "KIND_DIGEST_SEND",
    "KIND_ESCALATE",
    "RECEIPT_SOURCE_API",
    "Action",
    "DigestItem",
    "DigestPlan",
    "counts_as_sent",
    "critical_verdict",
    "decide_outcome",
    "digest_content",
    "digest_key",
    "digest_message",
    "digest_send_at",
    "digest_window",
    "earliest_reach",
    "escalates_on_exhaustion",
    "escalation_email",
    "escalation_email_key",
    "escalation_timer_key",
    "fallback_outcome",
    "push_failure_reason",
    "receipt_cancels",
    "receipt_is_foreign",
    "watches_critical",
]

KIND_ESCALATE = "escalate_push"
KIND_DIGEST_ITEM = "digest_item"
KIND_DIGEST_SEND = "digest_send"
KIND_CRITICAL_CHECK = "critical_check"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Action(StrEnum):
    IGNORE = "ignore"
    ARM_ESCALATION = "arm_escalation"  # high push sent: email unless a receipt comes in time
    ESCALATE_NOW = "escalate_now"  # high push failed permanently: email at once
    RETRY = "retry"  # failed_retryable: plan_retry
    ARM_DIGEST_ITEM = "arm_digest_item"  # medium in-app sent: digest it if still unread later


def decide_outcome(outcome: DeliveryOutcome, steps: Sequence[Step] = ()) -> list[Action]:
    """The actions an outcome calls for (the critical watch is separate: :func:`watches_critical`).

    ``steps`` is the workflow of the message's route (a preset expanded, see
    ``consumers.workflow.presets``): what follows a first send comes from its steps, not from
    the tier: a send followed by ``wait until delivered`` and ``escalate`` escalates (the high
    preset), one followed by ``wait until read`` and ``digest`` digests (the medium preset); a
    route without ``fallback: [email]`` has neither. Outcomes the fallback consumer itself writes
    (escalated, exhausted, suppressed) come back on the same topic and are ignored here, so
    nothing loops."""
    if outcome.message is None:
        return [Action.IGNORE]
    message, status = outcome.message, outcome.status
    if status == OutcomeStatus.FAILED_RETRYABLE:
        return [Action.RETRY]
    if message.escalated_from is not None:
        return [Action.IGNORE]  # already an escalation: it does not escalate again
    if escalation_after(steps, message.channel) is not None:
        if status == OutcomeStatus.SENT:
            return [Action.ARM_ESCALATION]
        if status == OutcomeStatus.FAILED_PERMANENT:
            return [Action.ESCALATE_NOW]
    if status == OutcomeStatus.SENT and digest_after(steps, message.channel) is not None:
        return [Action.ARM_DIGEST_ITEM]
    return [Action.IGNORE]


def push_failure_reason(outcome: DeliveryOutcome) -> str:
    """``push_failed:<reason>`` for the escalated outcome. Every permanent push failure escalates
    (no_device, UNREGISTERED, payload_too_large, a template that fails): the user still deserves
    the message, and email is the high tier's fallback channel."""
    detail = outcome.reason or (outcome.error_code or "unknown").lower()
    return f"push_failed:{detail}"


def escalates_on_exhaustion(message: ChannelMessage, steps: Sequence[Step] = ()) -> bool:
    """A send whose retries ran out escalates like a permanent failure (when its steps escalate)."""
    return message.escalated_from is None and escalation_after(steps, message.channel) is not None


def watches_critical(outcome: DeliveryOutcome) -> bool:
    """Channel outcomes of critical notifications feed the critical watch."""
    return (
        outcome.tier == Tier.CRITICAL
        and outcome.channel is not None
        and outcome.status
        in (
            OutcomeStatus.SENT,
            OutcomeStatus.DELIVERED,
            OutcomeStatus.FAILED_PERMANENT,
            OutcomeStatus.FAILED_RETRYABLE,
            OutcomeStatus.EXHAUSTED,
        )
    )


def counts_as_sent(status: OutcomeStatus) -> bool:
    """A provider accepted the message (or a client confirmed it): the user was reached."""
    return status in (OutcomeStatus.SENT, OutcomeStatus.DELIVERED, OutcomeStatus.READ)


RECEIPT_SOURCE_API = "api"  # Receipt.source of POST /v1/receipts (consumers/api/routes_settings.py)


def receipt_is_foreign(
    source: str,
    user_id: str,
    owner: str | None,
    *,
    tenant: str | None = None,
    owner_tenant: str | None = None,
) -> bool:
    """A receipt from the API (an end-user token: anyone's) about a notification of another user,
    or of the same user id in another tenant. Other sources (the inbox's mark-read, ``herald
    receipt``) are Herald's own and trusted; ``owner`` None: the notification is not known yet (an
    early receipt, checked again when its ``sent`` outcome comes). ``tenant`` None: the receipt
    does not say (Receipt v1); ``owner_tenant`` None: the record that names the owner does not."""
    if source != RECEIPT_SOURCE_API or owner is None:
        return False
    return owner != user_id or (tenant is not None and owner_tenant is not None and tenant != owner_tenant)


def receipt_cancels(status: ReceiptStatus) -> bool:
    """Any client receipt proves the push arrived: delivered, opened and read all cancel escalation."""
    return status in (ReceiptStatus.DELIVERED, ReceiptStatus.OPENED, ReceiptStatus.READ)


# -- keys -------------------------------------------------------------------------------------------
def escalation_timer_key(push_key: str, *, immediate: bool = False) -> str:
    """The timeout timer and the at-once timer of a push differ: both may exist, one escalates."""
    return derived_key(push_key, "escalate:failed" if immediate else "escalate")


def escalation_email_key(push_key: str) -> str:
    return derived_key(push_key, "escalate:email")


def digest_key(user_id: str, window_start: datetime, tenant: str = "") -> str:
    """The medium digest of (tenant, user, window). The default tenant's keys are those of the
    time before tenants, so digests already sent keep their keys; another tenant's name it (and a
    purpose of their own, so no user id can make one tenant's key another's)."""
    window = window_start.astimezone(UTC).isoformat()
    if not tenant:
        return derived_key(f"{user_id}\x1f{window}", "digest")
    return derived_key(f"{tenant}\x1f{user_id}\x1f{window}", "digest:tenant")


# -- escalation -------------------------------------------------------------------------------------
def escalation_email(push: ChannelMessage, email: str) -> ChannelMessage:
    """The email that replaces an undelivered high-tier push: same notification, derived key."""
    return dataclasses.replace(
        push,
        channel=Channel.EMAIL,
        lane=Lane.PRIORITY,
        recipient=email,
        idempotency_key=escalation_email_key(push.idempotency_key),
        attempt=1,
        not_before=None,
        escalated_from=push.idempotency_key,
    )


def fallback_outcome(
    message: ChannelMessage,
    status: OutcomeStatus,
    *,
    now: datetime,
    reason: str | None = None,
    detail: str | None = None,
    channel: Channel | None = None,
    key: str | None = None,
) -> DeliveryOutcome:
    """An outcome the fallback consumer records about ``message`` (escalated, exhausted, suppressed)."""
    key = key or message.idempotency_key
    return DeliveryOutcome.about(
        message,
        status,
        outcome_id=outcome_id(key, f"{status.value}:{reason or ''}", message.attempt),
        recorded_at=now,
        channel=channel or message.channel,
        reason=reason,
        detail=detail,
        idempotency_key=key,
    )


# -- digest -----------------------------------------------------------------------------------------
def digest_window(at: datetime, window_s: float) -> datetime:
    """Start of the epoch-aligned window containing ``at``."""
    if window_s <= 0:
        raise ValueError("digest window must be positive")
    elapsed = (at - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=(elapsed // window_s) * window_s)


@dataclass(frozen=True, slots=True)
class DigestPlan:
    window_start: datetime
    send_at: datetime


def digest_send_at(
    joined_at: datetime,
    *,
    window_s: float,
    collect_s: float,
    sent_windows: Sequence[datetime],
    quiet_until: datetime | None = None,
) -> DigestPlan:
    """Which window's digest an item joining at ``joined_at`` goes into, and when that digest is sent.

    The item's own window, unless that window's digest already went out (at most one digest
    per window): then the next free window, sent no earlier than the window's start. The send
    time is pushed past the user's quiet hours (``quiet_until`` evaluated by the caller at the
    candidate time; see :func:`consumers.classifier.quiet_hours.quiet_until`).
    """
    window = digest_window(joined_at, window_s)
    step = timedelta(seconds=window_s)
    sent = set(sent_windows)
    while window in sent:
        window += step
    send_at = max(joined_at + timedelta(seconds=collect_s), window)
    if quiet_until is not None and quiet_until > send_at:
        send_at = quiet_until
    return DigestPlan(window, send_at)


@dataclass(frozen=True, slots=True)
class DigestItem:
    title: str
    body: str
    created_at: datetime


def digest_content(items: Sequence[DigestItem], max_items: int) -> dict[str, Any]:
    """The ``digest`` template's variables: the newest ``max_items`` items and how many more."""
    ordered = sorted(items, key=lambda i: i.created_at, reverse=True)
    shown = ordered[: max(0, max_items)]
    return {
        "items": [
            {"title": i.title, "body": i.body, "created_at": i.created_at.astimezone(UTC).isoformat()}
            for i in shown
        ],
        "more": len(ordered) - len(shown),
    }


def digest_message(
    *,
    user_id: str,
    email: str,
    window_start: datetime,
    content: dict[str, Any],
    locale: str,
    timezone: str,
    now: datetime,
    tenant: str = "",
) -> ChannelMessage:
    """The digest email: one per (tenant, user, window); its ids derive from the window, not from
    timing. It carries the tenant ('' = the default: none), so the email consumer uses the
    tenant's sender and templates."""
    key = digest_key(user_id, window_start, tenant)
    event_id = f"digest:{key}"
    return ChannelMessage(
        notification_id=notification_id(event_id, user_id),
        event_id=event_id,
        event_type=DIGEST_EVENT_TYPE,
        user_id=user_id,
        channel=Channel.EMAIL,
        lane=Lane.PRIORITY,
        tier=Tier.MEDIUM,
        category="activity",
        recipient=email,
        template=DIGEST_EVENT_TYPE,
        locale=locale,
        timezone=timezone,
        payload=json.dumps(content, separators=(",", ":")),
        idempotency_key=key,
        occurred_at=now,
        tenant=tenant or None,
    )


# -- critical ---------------------------------------------------------------------------------------
def earliest_reach(
    sends: Iterable[tuple[str, datetime, str | None]],
) -> dict[str, tuple[datetime, str | None]]:
    """Each notification's earliest send (time, channel) among ``(notification, time, channel)``,
    the first of equal times: what marking each send in turn leaves (a send replaces the mark
    only when earlier)."""
    out: dict[str, tuple[datetime, str | None]] = {}
    for nid, at, channel in sends:
        mark = out.get(nid)
        if mark is None or mark[0] > at:
            out[nid] = (at, channel)
    return out


def critical_verdict(deadline: datetime, first_sent_at: datetime | None) -> bool:
    """Whether a critical notification reached the user in time (some channel sent by the deadline)."""
    return first_sent_at is not None and first_sent_at <= deadline
