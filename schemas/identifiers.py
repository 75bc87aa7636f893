"""The one check of an event's identifiers, wherever an event enters Herald. Pure.

``user_id``, ``tenant``, the event ``type``, ``event_id``, ``topic`` and ``cancel_key`` become Kafka keys, SQL values,
Redis keys, log lines and URL parts. Each must be non-empty, within its length limit and free
of control characters (C0, DEL, C1) and lone surrogates: PostgreSQL cannot store a NUL, a
surrogate cannot be encoded as UTF-8, and a 100 KB key overflows an index row.

The emitter checks before producing, the classifier checks again (a raw producer can bypass
the emitter) and dead-letters with reason ``invalid_event``, and the HTTP emit endpoint answers
422 with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from schemas.errors import RecordError
from schemas.models import DomainEvent

__all__ = [
    "LIMITS",
    "InvalidIdentifier",
    "check_event",
    "check_identifier",
    "check_identifiers",
    "identifier_problem",
]

# Longest accepted value per field, in characters.
LIMITS: Mapping[str, int] = {
    "user_id": 256,
    "tenant": 128,
    "type": 128,
    "event_id": 200,
    "topic": 200,
    "cancel_key": 200,
}

# Unicode categories Cc (control characters: exactly C0, DEL and C1) and Cs (surrogates), as one
# character class: a C-level scan, where a per-character unicodedata lookup cost the classifier
# about 5 % of its CPU (tests/unit/schemas/test_identifiers.py checks it against unicodedata).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_EVENT_ID, _TYPE, _USER_ID = LIMITS["event_id"], LIMITS["type"], LIMITS["user_id"]


class InvalidIdentifier(RecordError, ValueError):
    """An identifier of the event is empty, too long or carries control characters."""

    reason = "invalid_event"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def identifier_problem(value: str, *, limit: int) -> str | None:
    """What is wrong with ``value`` as an identifier, or None. Pure."""
    if not value or not value.strip():
        return "must not be empty"
    if len(value) > limit:
        return f"{len(value)} characters > {limit}"
    found = _FORBIDDEN.search(value)
    if found is not None:
        return f"control character or lone surrogate U+{ord(found.group()):04X} at position {found.start()}"
    return None


def check_identifier(field: str, value: str | None, *, required: bool = True) -> None:
    """Raise :class:`InvalidIdentifier` naming ``field`` if ``value`` is not acceptable."""
    if value is None:
        if required:
            raise InvalidIdentifier(field, "must not be empty")
        return
    problem = identifier_problem(value, limit=LIMITS[field])
    if problem is not None:
        raise InvalidIdentifier(field, problem)


def check_identifiers(
    *,
    event_id: str,
    event_type: str,
    user_id: str,
    tenant: str | None,
    topic: str | None = None,
    cancel_key: str | None = None,
) -> None:
    """Check every identifier of a DomainEvent; the first bad one raises, naming its field.

    ``user_id`` may be empty only for a fan-out event (one with a ``topic``).
    """
    check_identifier("event_id", event_id)
    check_identifier("type", event_type)
    check_identifier("topic", topic, required=False)
    check_identifier("user_id", user_id or None, required=topic is None)
    check_identifier("tenant", tenant, required=False)
    check_identifier("cancel_key", cancel_key, required=False)


def check_event(event: DomainEvent) -> None:
    """:func:`check_identifiers` of a whole DomainEvent.

    Every event passes through here (the classifier checks each one again), so the usual case is
    one test: every identifier present where required, within its limit, and none with a forbidden
    character (one scan of them all). Anything else goes through the field-by-field check, which
    raises naming the field.
    """
    e, t, u, tenant, topic, ck = (
        event.event_id,
        event.type,
        event.user_id,
        event.tenant,
        event.topic,
        event.cancel_key,
    )
    if (
        topic is None
        and tenant is None
        and ck is None
        and 0 < len(e) <= _EVENT_ID
        and 0 < len(t) <= _TYPE
        and 0 < len(u) <= _USER_ID
        and not e.isspace()
        and not t.isspace()
        and not u.isspace()
        and _FORBIDDEN.search(f"{e}{t}{u}") is None
    ):
        return
    check_identifiers(
        event_id=event.event_id,
        event_type=event.type,
        user_id=event.user_id,
        tenant=event.tenant,
        topic=event.topic,
        cancel_key=event.cancel_key,
    )
