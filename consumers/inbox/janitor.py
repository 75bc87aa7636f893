"""``herald run inbox-janitor``: keeps the in-app inbox from growing without bound.

Deletes read rows older than ``in_app.retention_days`` and every row past its ``expires_at``,
``in_app.janitor_batch`` rows per short transaction: each batch picks its ids through the
partial indexes of migration 030, skips rows another transaction holds (``SKIP LOCKED``),
gives up quickly on a lock (``lock_timeout``) and commits, so the table is never locked for
long and readers/writers interleave between batches. Rows are deleted, not moved: an archive
is a product decision (export them from a replica if needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from consumers.infra.clock import Clock
from consumers.infra.resources import Resources
from consumers.infra.settings import InAppSettings
from consumers.runtime import metrics
from consumers.runtime.process import ProcessOptions, ProcessSpec

__all__ = ["InboxJanitor", "Sweep", "build"]

log = logging.getLogger(__name__)

_READ_SQL = """
DELETE FROM herald_inbox WHERE id IN (
    SELECT id FROM herald_inbox WHERE read_at IS NOT NULL AND read_at < $1
     LIMIT $2 FOR UPDATE SKIP LOCKED)
"""
_EXPIRED_SQL = """
DELETE FROM herald_inbox WHERE id IN (
    SELECT id FROM herald_inbox WHERE expires_at IS NOT NULL AND expires_at <= $1
     LIMIT $2 FOR UPDATE SKIP LOCKED)
"""


@dataclass(frozen=True, slots=True)
class Sweep:
    read_deleted: int
    expired_deleted: int
    batches: int


class InboxJanitor:
    def __init__(
        self, pool: asyncpg.Pool, settings: InAppSettings, clock: Clock, *, lock_timeout_ms: int = 500
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._lock_timeout = f"{int(lock_timeout_ms)}ms"

    async def sweep(self, now: datetime, stopping: asyncio.Event | None = None) -> Sweep:
        """One pass; returns what it deleted. Stops between batches when ``stopping`` is set."""
        cutoff = now - timedelta(days=self._settings.retention_days)
        read, b1 = await self._batches(_READ_SQL, cutoff, stopping)
        expired, b2 = await self._batches(_EXPIRED_SQL, now, stopping)
        return Sweep(read, expired, b1 + b2)

    async def _batches(self, sql: str, bound: datetime, stopping: asyncio.Event | None) -> tuple[int, int]:
        total = batches = 0
        size = self._settings.janitor_batch
        while stopping is None or not stopping.is_set():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{self._lock_timeout}'")
                status: str = await conn.execute(sql, bound, size)
            deleted = int(status.rsplit(" ", 1)[1])
            total += deleted
            batches += 1
            if deleted < size:
                break
            await asyncio.sleep(0)  # let the pool's other users in between batches
        return total, batches

    async def run(self, stopping: asyncio.Event) -> None:
        """Sweep every ``janitor_interval_s`` until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                result = await self.sweep(self._clock.now(), stopping)
                if result.read_deleted or result.expired_deleted:
                    log.info(
                        "inbox janitor: deleted %d read and %d expired rows in %d batches",
                        result.read_deleted,
                        result.expired_deleted,
                        result.batches,
                    )
            except (OSError, asyncpg.PostgresError) as exc:
                # Lock timeouts and outages alike: try again next interval.
                metrics.DEPENDENCY_ERRORS.labels("postgres", "inbox-janitor").inc()
                log.warning("inbox janitor: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._settings.janitor_interval_s)


async def build(res: Resources, _: ProcessOptions) -> ProcessSpec:
    janitor = InboxJanitor(await res.pool(), res.settings.in_app, res.clock)
    return ProcessSpec(loops=[janitor.run])
