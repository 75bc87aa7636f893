"""What the ledger writes: one :class:`ActivityRow` per outcome, receipt or dead letter, and the
day-partition arithmetic of the activity store. Pure functions, no I/O.

A row's identity is ``(dedupe_key, status, attempt, anchor_at)``; every field of it comes from the
record itself (never from the ledger's clock), so consuming the same record twice yields the same
identity and the second insert adds nothing. A receipt's key names its sender (user and tenant).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime, timedelta

from schemas.models import DeliveryOutcome, Receipt

__all__ = [
    "COLUMNS",
    "DEAD_LETTERED",
    "ActivityRow",
    "DeadLetterCoordinates",
    "bare_dead_letter",
    "columns_of",
    "expired_partitions",
    "oldest_kept_day",
    "partition_bounds",
    "partition_day",
    "partition_name",
    "row_from_dead_letter",
    "row_from_outcome",
    "row_from_receipt",
]

DEAD_LETTERED = "dead_lettered"
_PREFIX = "herald_activity_p"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _text(value: str | None, limit: int = 2000) -> str | None:
    """PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate: a record carrying one must not
    fail the whole batch (each becomes U+FFFD)."""
    if value is None:
        return None
    return _UNSTORABLE.sub("\ufffd", value[:limit])


def bare_dead_letter(row: ActivityRow, error: str) -> ActivityRow:
    """A dead letter's row PostgreSQL refused, reduced to what always fits: its coordinates and a
    short reason, the refusal in ``detail``. A dead letter has no dead-letter topic of its own."""
    return dataclasses.replace(
        row,
        event_id=None,
        notification_id=None,
        user_id=None,
        event_type=None,
        channel=None,
        reason=(row.reason or "unknown")[:64].encode("ascii", "replace").decode(),
        detail=_text(f"stored without its identifiers: {error}", 1000),
        error_code=None,
        source_topic=None,
        consumer_group=None,
    )


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One row of ``herald_activity`` (field order = column order of the insert)."""

    anchor_at: datetime
    dedupe_key: str
    status: str
    attempt: int
    kind: str
    recorded_at: datetime
    event_id: str | None = None
    notification_id: str | None = None
    user_id: str | None = None
    tenant: str | None = None
    event_type: str | None = None
    tier: str | None = None
    channel: str | None = None
    lane: str | None = None
    recipient: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    error_code: str | None = None
    not_before: datetime | None = None
    escalated_from: str | None = None
    topic: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None
    source_topic: str | None = None
    consumer_group: str | None = None


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ActivityRow))


def columns_of(rows: Sequence[ActivityRow]) -> list[list[object]]:
    """The rows transposed: one list per column (what ``unnest`` takes)."""
    if not rows:
        return [[] for _ in COLUMNS]
    return [list(col) for col in zip(*(astuple(r) for r in rows), strict=True)]


def row_from_outcome(o: DeliveryOutcome) -> ActivityRow:
    """An outcome, keyed by its idempotency key (its outcome id when it has none: a decision taken
    before any message existed), anchored at the event's time."""
    m = o.message
    return ActivityRow(
        anchor_at=o.occurred_at,
        dedupe_key=o.idempotency_key or o.outcome_id,
        status=o.status.value,
        attempt=o.attempt,
        kind="outcome",
        recorded_at=o.recorded_at,
        event_id=_text(o.event_id),
        notification_id=_text(o.notification_id),
        user_id=_text(o.user_id),
        tenant=_text(m.tenant) if m is not None else None,
        event_type=_text(o.event_type),
        tier=o.tier.value,
        channel=o.channel.value if o.channel is not None else None,
        lane=o.lane.value if o.lane is not None else None,
        recipient=_text(m.recipient) if m is not None else None,
        provider=_text(o.provider),
        provider_message_id=_text(o.provider_message_id),
        reason=_text(o.reason),
        detail=_text(o.detail),
        error_code=_text(o.error_code),
        not_before=o.not_before,
        escalated_from=_text(m.escalated_from) if m is not None else None,
    )


def row_from_receipt(r: Receipt) -> ActivityRow:
    """A receipt, keyed by its notification, channel and sender (user and tenant), anchored at its
    time. The sender is part of the key because any end-user token may post a receipt for any
    notification id, with any time it likes: keyed without it, another user's receipt (foreign,
    dropped by the fallback) at the owner's time took the owner's row and the owner's was lost."""
    channel = r.channel.value if r.channel is not None else ""
    # JSON, so that neither a ':' in an id nor a receipt without a tenant (null, not '') can make
    # two senders' keys equal.
    sender = json.dumps([r.user_id, r.tenant], separators=(",", ":"))
    return ActivityRow(
        anchor_at=r.at,
        dedupe_key=_text(f"receipt:{r.notification_id}:{channel}:{sender}") or "",
        status=r.status.value,
        attempt=0,
        kind="receipt",
        recorded_at=r.at,
        notification_id=_text(r.notification_id),
        user_id=_text(r.user_id),
        tenant=_text(r.tenant),
        channel=channel or None,
        provider=_text(r.source),
    )


@dataclass(frozen=True, slots=True)
class DeadLetterCoordinates:
    """Where a dead letter sits (the .dlq topic) and when it was written."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def _header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    value = None
    for key, raw in headers:
        if key == name:  # the last one wins: a replayed record carries its older verdicts first
            value = raw.decode("utf-8", "replace")
    return value


def row_from_dead_letter(
    at: DeadLetterCoordinates,
    headers: Sequence[tuple[str, bytes]],
    ids: dict[str, str | None] | None = None,
) -> ActivityRow:
    """A dead letter, from its headers (reason, error class, source); ``ids`` are whatever the body
    told (event id, notification id, user) when it could be decoded."""
    ids = ids or {}
    when = datetime.fromtimestamp(at.timestamp_ms / 1000, UTC)
    return ActivityRow(
        anchor_at=when,
        dedupe_key=f"dlq:{at.topic}:{at.partition}:{at.offset}",
        status=DEAD_LETTERED,
        attempt=0,
        kind="dead_letter",
        recorded_at=when,
        event_id=_text(ids.get("event_id")),
        notification_id=_text(ids.get("notification_id")),
        user_id=_text(ids.get("user_id")),
        event_type=_text(ids.get("event_type")),
        channel=_text(ids.get("channel")),
        reason=_text(_header(headers, "herald-dlq-reason")) or "unknown",
        detail=_text(_header(headers, "herald-dlq-detail")),
        error_code=_text(_header(headers, "herald-dlq-error-class")),
        topic=at.topic,
        kafka_partition=at.partition,
        kafka_offset=at.offset,
        source_topic=_text(_header(headers, "herald-source-topic")),
        consumer_group=_text(_header(headers, "herald-consumer-group")),
    )


# -- day partitions ------------------------------------------------------------------------------
def partition_day(when: datetime) -> date:
    return when.astimezone(UTC).date()


def partition_name(day: date) -> str:
    return f"{_PREFIX}{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _day_of(name: str) -> date | None:
    if not name.startswith(_PREFIX):
        return None
    try:
        return datetime.strptime(name[len(_PREFIX) :], "%Y%m%d").date()
    except ValueError:
        return None


def oldest_kept_day(today: date, retention_days: int) -> date:
    """The first day retention keeps: today and the ``retention_days - 1`` days before it."""
    return today - timedelta(days=max(1, retention_days) - 1)


def expired_partitions(existing: Iterable[str], today: date, retention_days: int) -> list[str]:
    """Partitions whose whole day is older than the retention: dropped, never trimmed row by row."""
    first = oldest_kept_day(today, retention_days)
    return sorted(n for n in existing if (d := _day_of(n)) is not None and d < first)
