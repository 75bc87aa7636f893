"""Deterministic identifiers: a replay of the same event yields the same ids and keys.

* ``notification_id``: one per (tenant, event, user), shared by every channel of the notification.
* ``idempotency_key``: one per (tenant, event, channel, recipient): the provider-facing dedupe
  key, reused by every retry (webhooks send it as ``webhook-id``).
* ``derived_key``: keys of escalations, digests and timers, derived from a parent key and a
  purpose, so re-deriving after a crash gives the same key.

Tenants choose their event ids, so two tenants may use the same one: another tenant's ids name
it. The default tenant's (``""``) are those of the time before tenants, so notifications already
stored, sent or in flight keep their ids. A tenant's inputs are joined with ``\x1e``, a control
character no checked identifier holds (``schemas.identifiers``), so no event or user id of the
default tenant can make one tenant's id another's.
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


def notification_id(event_id: str, user_id: str, tenant: str | None = None) -> str:
    """``str(uuid.uuid5(_NAMESPACE, event_id + "\\x1f" + user_id))`` in the default tenant
    (``tenant + "\\x1e"`` in front in any other), without building a UUID object (a hot path:
    once per classified event): the digest's hex with the version digit (5) and the variant digit
    written in place."""
    name = f"{event_id}\x1f{user_id}" if not tenant else f"{tenant}\x1e{event_id}\x1f{user_id}"
    x = _SHA1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def idempotency_key(event_id: str, channel: str, recipient: str, tenant: str | None = None) -> str:
    """``msg_`` + 32 hex chars of SHA-256 over (event_id, channel, recipient), and the tenant
    (first, ``\\x1e`` after it) in any but the default one."""
    if not tenant:
        return "msg_" + _digest(event_id, channel, recipient)
    return "msg_" + _digest(f"{tenant}\x1e{event_id}", channel, recipient)


def derived_key(parent: str, purpose: str) -> str:
    """A key for something caused by ``parent``: ``derived_key(k, "escalate:email")``."""
    return "msg_" + _digest(parent, purpose)


def outcome_id(key: str, status: str, attempt: int = 1) -> str:
    """The same decision replayed produces the same outcome id."""
    return "out_" + _digest(key, status, str(attempt))
