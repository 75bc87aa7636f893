"""A durable timer, the handlers that fire one, and reading one from its row (``herald_timers``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from consumers.runtime.handling import Output

__all__ = [
    "KIND_DEFERRED_SEND",
    "BatchLock",
    "FireBatchHandler",
    "FireHandler",
    "Timer",
    "deferred_timer",
    "publish_timer",
    "read_timer",
    "timer_of",
]

KIND_DEFERRED_SEND = "deferred_send"
"""A message held by quiet hours: the fallback releases it through the consent check, as a retry."""


@dataclass(frozen=True, slots=True)
class Timer:
    key: str
    kind: str
    due_at: datetime
    topic: str | None = None
    msg_key: bytes | None = None
    payload: bytes | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def publish_timer(
    key: str,
    due_at: datetime,
    topic: str,
    msg_key: bytes | None,
    payload: bytes,
    *,
    tenant: str | None = None,
) -> Timer:
    """A timer that, when due, produces ``payload`` to ``topic`` as it is (scheduled sends, limiter
    retries; the quiet-hours deferrals armed before :data:`KIND_DEFERRED_SEND`).

    ``tenant`` (``""`` for the default one) goes in its data when given: a timer whose record key
    is the user id is erased with that tenant's user only (``consumers/api/admin/recipients_pg.py``).
    """
    data = {} if tenant is None else {"tenant": tenant}
    return Timer(
        key=key, kind="publish", due_at=due_at, topic=topic, msg_key=msg_key, payload=payload, data=data
    )


def deferred_timer(
    key: str,
    due_at: datetime,
    topic: str,
    msg_key: bytes | None,
    payload: bytes,
    *,
    data: Mapping[str, Any] | None = None,
) -> Timer:
    """A quiet-hours deferral of the encoded ChannelMessage ``payload``: at ``due_at`` the fallback asks
    the consent check again (an opt-out since, or quiet hours moved later) before it produces it to
    ``topic``. ``data``: ``opt_in`` when the channel needs the user's stored yes."""
    return Timer(key, KIND_DEFERRED_SEND, due_at, topic, msg_key, payload, data or {})


FireHandler = Callable[[Timer, asyncpg.Connection], Awaitable[Sequence[Output]]]
"""Decides what a due timer produces; runs inside the releasing transaction."""

FireBatchHandler = Callable[[Sequence[Timer], asyncpg.Connection], Awaitable[Mapping[str, Sequence[Output]]]]
"""Fires due timers of one kind together, in one savepoint of the releasing transaction: the
outputs of each timer it fired, by key. A timer it leaves out fires after it through the kind's
:data:`FireHandler`; an error that is not an outage undoes all its work and they all do."""

BatchLock = Callable[[Sequence[Timer], asyncpg.Connection], Awaitable[None]]
"""Takes again what a batch handler of the kind locked first, once its undone savepoint released it:
its timers then fire one by one in due order, and each would take its row out of that order."""


def read_timer(row: asyncpg.Record) -> Timer:
    return Timer(
        row["key"],
        row["kind"],
        row["due_at"],
        row["topic"],
        row["msg_key"],
        row["payload"],
        json.loads(row["data"]),
    )


def timer_of(row: asyncpg.Record) -> Timer | None:
    """The row's timer, or None when its data cannot be read (it fires alone, and is set aside)."""
    try:
        return read_timer(row)
    except Exception:  # any unreadable row (bad JSON, data nested too deep) fires alone, set aside
        return None
