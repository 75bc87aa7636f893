"""The pure half of the fan-out: which events fan out, and each subscriber's copy."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

from schemas.models import DomainEvent

__all__ = [
    "FANOUT_NAMESPACE",
    "FINISHED_FANOUT_KEEP",
    "STALE_BROADCAST_AFTER",
    "copy_for",
    "copy_id",
    "is_broadcast",
    "stale_without_cursor",
]

FANOUT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://herald.dev/fanout")
# A finished cursor is what makes a replayed broadcast (the topic event read again from Kafka, or
# posted again under its event id) send nothing. Kept well past herald.events' retention (Kafka's
# default 7 days), POST /v1/events' id dedupe (1 day) and the delivery ledger (2 days): the inbox
# janitor deletes it after this. Unfinished cursors are a broadcast's progress and always kept.
FINISHED_FANOUT_KEEP = timedelta(days=30)
# A topic event without a cursor that occurred longer ago than this may be one whose cursor the
# janitor deleted (a DLQ replay, a topic kept longer than Kafka's default, an offset reset): it is
# dead-lettered rather than sent to every subscriber again. A day under the keep: producers' clocks.
STALE_BROADCAST_AFTER = FINISHED_FANOUT_KEEP - timedelta(days=1)


def is_broadcast(event: DomainEvent) -> bool:
    """Addressed to a topic and to no user (a fanned-out copy carries both, and is not fanned again)."""
    return bool(event.topic) and not event.user_id


def stale_without_cursor(occurred_at: datetime, now: datetime) -> bool:
    """Whether a topic event with no cursor is too old to broadcast (see :data:`STALE_BROADCAST_AFTER`)."""
    return now - occurred_at > STALE_BROADCAST_AFTER


def copy_id(event_id: str, user_id: str) -> str:
    """The subscriber's copy's event id: the same for every replay, so downstream keys dedupe it."""
    return str(uuid.uuid5(FANOUT_NAMESPACE, f"{event_id}\x1f{user_id}"))


def copy_for(event: DomainEvent, user_id: str) -> DomainEvent:
    """``event`` addressed to ``user_id``; ``topic`` stays set so the copy says where it came from."""
    return dataclasses.replace(event, event_id=copy_id(event.event_id, user_id), user_id=user_id)
