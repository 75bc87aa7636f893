"""The pure half of the fan-out: which events fan out, and each subscriber's copy."""

from __future__ import annotations

import dataclasses
import uuid

from schemas.models import DomainEvent

__all__ = ["FANOUT_NAMESPACE", "copy_for", "copy_id", "is_broadcast"]

FANOUT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://herald.dev/fanout")


def is_broadcast(event: DomainEvent) -> bool:
    """Addressed to a topic and to no user (a fanned-out copy carries both, and is not fanned again)."""
    return bool(event.topic) and not event.user_id


def copy_id(event_id: str, user_id: str) -> str:
    """The subscriber's copy's event id: the same for every replay, so downstream keys dedupe it."""
    return str(uuid.uuid5(FANOUT_NAMESPACE, f"{event_id}\x1f{user_id}"))


def copy_for(event: DomainEvent, user_id: str) -> DomainEvent:
    """``event`` addressed to ``user_id``; ``topic`` stays set so the copy says where it came from."""
    return dataclasses.replace(event, event_id=copy_id(event.event_id, user_id), user_id=user_id)
