"""LISTEN on one PostgreSQL channel for the life of a process, reconnecting when the link is lost.

NOTIFY is fire-and-forget: whatever is notified while nobody listens is gone. So each user is
told, every time listening (re)starts, whether this is a reconnect (``on_listen(True)``), and
resyncs from the database or drops its cache: what it may have missed is its own business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from channels.storage_errors import PG_ERRORS

__all__ = ["PgListener"]

log = logging.getLogger(__name__)


class PgListener:
    """A BackgroundLoop: ``run`` listens until ``stopping``; ``listening`` is set while it does."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_payload: Callable[[str], None],
        *,
        on_listen: Callable[[bool], None],
        label: str,
        reconnect_s: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_payload = on_payload
        self._on_listen = on_listen
        self._label = label
        self._reconnect_s = reconnect_s
        self.listening = asyncio.Event()
        self.connection: asyncpg.Connection | None = None  # while listening

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    async def run(self, stopping: asyncio.Event) -> None:
        lost = False
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("%s: cannot LISTEN on %s (%s); retrying", self._label, self._channel, exc)
                await wait_or_stop(stopping, self._reconnect_s)
                continue
            dropped = asyncio.Event()
            conn.add_termination_listener(lambda _c, d=dropped: d.set())
            try:
                await conn.add_listener(self._channel, self._notified)
                self.connection = conn
                self._on_listen(lost)
                self.listening.set()
                waiter = asyncio.create_task(dropped.wait())
                stopper = asyncio.create_task(stopping.wait())
                await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
            except PG_ERRORS as exc:
                log.warning("%s: LISTEN connection failed: %s", self._label, exc)
            finally:
                self.listening.clear()
                self.connection = None
                with contextlib.suppress(*PG_ERRORS):
                    await conn.close(timeout=2)
            if not stopping.is_set():
                lost = True
                log.warning("%s: LISTEN connection lost; reconnecting", self._label)
                await wait_or_stop(stopping, self._reconnect_s)


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stopping`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
