"""Deterministic identifiers: a replay of the same event yields the same ids and keys.

* ``notification_id``: one per (event, user), shared by every channel of the notification.
* ``idempotency_key``: one per (event, channel, recipient): the provider-facing dedupe key,
  reused by every retry (webhooks send it as ``webhook-id``).
* ``derived_key``: keys of escalations, digests and timers, derived from a parent key and a
  purpose, so re-deriving after a crash gives the same key.
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["derived_key", "idempotency_key", "notification_id", "outcome_id"]

_NAMESPACE = uuid.UUID("6f1d1c3e-5b0a-4c7e-9d1f-6e7261616c64")


_NAMESPACE_BYTES = _NAMESPACE.bytes
_SHA1 = hashlib.sha1
# The variant bits (RFC 4122: 10xx) set on the first hex digit of byte 8; its other two bits stay.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def notification_id(event_id: str, user_id: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, event_id + "\\x1f" + user_id))``, without building a UUID object
    (a hot path: once per classified event): the digest's hex with the version digit (5) and the
    variant digit written in place."""
    x = _SHA1(_NAMESPACE_BYTES + f"{event_id}\x1f{user_id}".encode()).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def idempotency_key(event_id: str, channel: str, recipient: str) -> str:
    """``msg_`` + 32 hex chars of SHA-256 over (event_id, channel, recipient)."""
    return "msg_" + _digest(event_id, channel, recipient)


def derived_key(parent: str, purpose: str) -> str:
    """A key for something caused by ``parent``: ``derived_key(k, "escalate:email")``."""
    return "msg_" + _digest(parent, purpose)


def outcome_id(key: str, status: str, attempt: int = 1) -> str:
    """The same decision replayed produces the same outcome id."""
    return "out_" + _digest(key, status, str(attempt))
