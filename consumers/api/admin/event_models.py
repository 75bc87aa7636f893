"""``POST /v1/events`` bodies: one event or a list, checked field by field before anything is sent.

Pure: parsing, the tenant rule and the unknown-type suggestion take everything as arguments.
Every error carries its location (``body[3].user_id``), so a 422 names the offending field.
"""

from __future__ import annotations

import difflib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from consumers.classifier.routing import RoutingTable
from schemas.errors import HeraldError
from schemas.models import DomainEvent

__all__ = [
    "SEND_AT_MAX_AHEAD",
    "AcceptedEvent",
    "EventIn",
    "EventsAccepted",
    "FieldProblem",
    "parse_events",
    "send_at_problem",
    "to_domain_event",
]

# A send_at further ahead is a mistake (a year typed wrong, milliseconds read as seconds): it would
# sit as a timer for years, unseen, and erasure is the only way to find it.
SEND_AT_MAX_AHEAD = timedelta(days=366)


class EventIn(BaseModel, extra="forbid"):
    """A DomainEvent as JSON; ``data`` becomes the Avro ``payload`` text."""

    # Identifiers (type, user_id, topic, event_id, tenant, cancel_key) are checked by
    # schemas.identifiers, the one check every entry point shares (lengths, control characters).
    type: str
    user_id: str = ""
    topic: str | None = None
    event_id: str | None = Field(
        None, description="Default: a fresh UUID. Repeats within a day are not re-sent."
    )
    tenant: str | None = None
    locale: str | None = Field(None, max_length=35, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")
    occurred_at: datetime | None = Field(None, description="Default: now.")
    send_at: datetime | None = Field(None, description="Deliver at this time; at most 366 days ahead.")
    cancel_key: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="Template variables (a JSON object).")

    @model_validator(mode="after")
    def _one_addressee(self) -> Self:
        if bool(self.user_id) == (self.topic is not None):
            raise ValueError("exactly one of user_id and topic must be set")
        return self


class AcceptedEvent(BaseModel):
    event_id: str
    duplicate: bool = Field(description="True: this id was accepted before; no second event was sent.")


class EventsAccepted(BaseModel):
    events: list[AcceptedEvent]


class FieldProblem(HeraldError, ValueError):
    """One invalid field: ``loc`` as FastAPI spells it, ``("body", 3, "type")``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e["msg"]) for e in errors))
        self.errors = errors


_ONE = TypeAdapter(EventIn)
_MANY = TypeAdapter(list[EventIn])


def parse_events(raw: Any, max_events: int) -> tuple[list[EventIn], bool]:
    """(events, was_a_list) from a decoded JSON body; raises :class:`FieldProblem`."""
    is_list = isinstance(raw, list)
    if is_list and not raw:
        raise FieldProblem([{"loc": ("body",), "msg": "an empty batch", "type": "too_short"}])
    if is_list and len(raw) > max_events:
        raise FieldProblem([{"loc": ("body",), "msg": f"more than {max_events} events", "type": "too_long"}])
    try:
        events = _MANY.validate_python(raw) if is_list else [_ONE.validate_python(raw)]
    except ValidationError as exc:
        raise FieldProblem(
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None
    return events, is_list


def unknown_type(table: RoutingTable, event_type: str) -> str | None:
    """Why ``event_type`` is refused (no route), naming the closest routes; None when it routes."""
    if table.match(event_type) is not None:
        return None
    names = [r.match for r in table.routes]
    close = difflib.get_close_matches(event_type, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown event type {event_type!r} (no route matches it){hint}"


def to_domain_event(e: EventIn, tenant: str | None, now: datetime, new_id: uuid.UUID) -> DomainEvent:
    def utc(t: datetime | None) -> datetime | None:
        return None if t is None else (t if t.tzinfo else t.replace(tzinfo=UTC))

    return DomainEvent(
        event_id=e.event_id or str(new_id),
        type=e.type,
        occurred_at=utc(e.occurred_at) or now,
        user_id=e.user_id,
        tenant=tenant,
        locale=e.locale,
        payload=json.dumps(e.data, separators=(",", ":")),
        topic=e.topic,
        send_at=utc(e.send_at),
        cancel_key=e.cancel_key,
    )


def send_at_problem(send_at: datetime | None, now: datetime) -> str | None:
    """Why a (UTC) ``send_at`` is refused, or None: more than :data:`SEND_AT_MAX_AHEAD` after ``now``.
    A time in the past is fine: it is sent now."""
    if send_at is not None and send_at - now > SEND_AT_MAX_AHEAD:
        return f"more than {SEND_AT_MAX_AHEAD.days} days ahead"
    return None
