"""``herald run inbox-janitor``: keeps the inbox small by archiving, not deleting.

Moves read rows older than ``in_app.retention_days`` and every row past its ``expires_at`` to
``herald_inbox_archive`` (one partition per month of archiving, :mod:`consumers.inbox.archive`),
``in_app.janitor_batch`` rows per short transaction: each batch picks its ids through the partial
indexes of migration 030, skips rows another transaction holds (``SKIP LOCKED``), gives up
quickly on a lock (``lock_timeout``), deletes and inserts in one statement and commits, so a row
is always in exactly one of the two tables and readers/writers interleave between batches.
Archive partitions older than ``in_app.archive_retention_days`` are dropped whole (cheap, no
vacuum debt). The same pass deletes ``herald_sent`` rows past ``fallback.receipt_window_days``
(the fallback's memory of sent messages for their receipts) and early API receipts that waited
longer than :data:`EARLY_RECEIPT_WAIT` for their ``sent`` outcome (``herald_early_receipts``),
and the cursors of broadcasts that finished more than :data:`FINISHED_FANOUT_KEEP` ago
(``herald_fanout_cursors``, one row per broadcast, never deleted by the fan-out itself).
Last, in batches like the archiving, it deletes timers fired or cancelled more than
:data:`FINISHED_KEEP` ago (failed ones after :data:`FAILED_TIMER_KEEP`, unless their workflow run
still runs or waits) and workflow runs that ended (done, cancelled, dropped) more than
:data:`FINISHED_KEEP` ago with their step log: rows nothing else deletes, kept that long because
they are also what makes a replay do nothing (:mod:`consumers.inbox.finished`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from consumers.fanout.copies import FINISHED_FANOUT_KEEP
from consumers.inbox.archive import ARCHIVE_TABLE, expired_partitions
from consumers.inbox.archiving import ensure_partition, move_sql
from consumers.inbox.finished import (
    FAILED_TIMER_KEEP,
    FAILED_TIMERS_SQL,
    FINISHED_KEEP,
    TIMERS_SQL,
    WORKFLOW_START,
    WORKFLOWS_SQL,
)
from consumers.infra.clock import Clock
from consumers.infra.resources import Resources
from consumers.infra.settings import InAppSettings
from consumers.runtime import metrics
from consumers.runtime.process import ProcessOptions, ProcessSpec

__all__ = [
    "EARLY_RECEIPT_WAIT",
    "FAILED_TIMER_KEEP",
    "FINISHED_FANOUT_KEEP",
    "FINISHED_KEEP",
    "InboxJanitor",
    "Sweep",
    "build",
]

log = logging.getLogger(__name__)
# A receipt overtakes its sent outcome by the time between two topics' batches (seconds); one that
# waited an hour names an id nothing sent (any end-user token may post any id) and is deleted.
EARLY_RECEIPT_WAIT = timedelta(hours=1)

_READ_SQL = move_sql(
    "SELECT id FROM herald_inbox WHERE read_at IS NOT NULL AND read_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED"
)
_EXPIRED_SQL = move_sql(
    "SELECT id FROM herald_inbox WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED"
)
_PARTITIONS = f"""
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = '{ARCHIVE_TABLE}'::regclass
"""


@dataclass(frozen=True, slots=True)
class Sweep:
    read_archived: int
    expired_archived: int
    batches: int
    partitions_dropped: int = 0
    timers_deleted: int = 0
    workflows_deleted: int = 0


class InboxJanitor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: InAppSettings,
        clock: Clock,
        *,
        lock_timeout_ms: int = 500,
        receipt_window_days: int | None = None,
        fanout_cursor_keep: timedelta | None = None,
        finished_keep: timedelta | None = None,
        failed_timer_keep: timedelta | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._lock_timeout = f"{int(lock_timeout_ms)}ms"
        self._receipt_window_days = receipt_window_days
        self._fanout_cursor_keep = fanout_cursor_keep
        # None: kept for ever (the tests' janitors, which share the tables with other tests).
        self._finished_keep = finished_keep
        self._failed_timer_keep = failed_timer_keep or finished_keep

    async def sweep(self, now: datetime, stopping: asyncio.Event | None = None) -> Sweep:
        """One pass; returns what it archived. Stops between batches when ``stopping`` is set."""
        await ensure_partition(self._pool, now)
        cutoff = now - timedelta(days=self._settings.retention_days)
        read, b1 = await self._batches(_READ_SQL, stopping, cutoff, now)
        expired, b2 = await self._batches(_EXPIRED_SQL, stopping, now, now)
        dropped = await self._drop_expired(now)
        if self._receipt_window_days is not None:
            await self._pool.execute(
                "DELETE FROM herald_sent WHERE sent_at < $1", now - timedelta(days=self._receipt_window_days)
            )
            await self._pool.execute(
                "DELETE FROM herald_early_receipts WHERE received_at < $1", now - EARLY_RECEIPT_WAIT
            )
        if self._fanout_cursor_keep is not None:
            # No index on finished_at: a row per broadcast, scanned once per janitor interval.
            status = await self._pool.execute(
                "DELETE FROM herald_fanout_cursors WHERE finished_at < $1", now - self._fanout_cursor_keep
            )
            if (pruned := int(status.rsplit(" ", 1)[1])) > 0:
                log.info("inbox janitor: deleted %d finished fan-out cursors", pruned)
        timers = workflows = 0
        if self._finished_keep is not None and self._failed_timer_keep is not None:
            ended, failed = now - self._finished_keep, now - max(self._failed_timer_keep, self._finished_keep)
            timers, _ = await self._batches(TIMERS_SQL, stopping, ended)
            failed_timers, _ = await self._batches(FAILED_TIMERS_SQL, stopping, failed)
            timers += failed_timers
            workflows = await self._finished_workflows(stopping, ended)
        return Sweep(read, expired, b1 + b2, dropped, timers, workflows)

    async def _drop_expired(self, now: datetime) -> int:
        names = [r["relname"] for r in await self._pool.fetch(_PARTITIONS)]
        expired = expired_partitions(names, now, self._settings.archive_retention_days)
        for name in expired:
            await self._pool.execute(f"DROP TABLE IF EXISTS {name}")
            log.info("inbox janitor: dropped archive partition %s", name)
        return len(expired)

    async def _batches(
        self, sql: str, stopping: asyncio.Event | None, bound: datetime, *rest: datetime
    ) -> tuple[int, int]:
        """Runs ``sql`` (``$1`` ``bound``, ``$2`` the batch size, then ``rest``) in short
        transactions until it affects fewer rows than a batch."""
        total = batches = 0
        size = self._settings.janitor_batch
        while stopping is None or not stopping.is_set():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{self._lock_timeout}'")
                status: str = await conn.execute(sql, bound, size, *rest)
            moved = int(status.rsplit(" ", 1)[1])
            total += moved
            batches += 1
            if moved < size:
                break
            await asyncio.sleep(0)  # let the pool's other users in between batches
        return total, batches

    async def _finished_workflows(self, stopping: asyncio.Event | None, cutoff: datetime) -> int:
        """:data:`~consumers.inbox.finished.WORKFLOWS_SQL` in short transactions, each batch after the
        last key the previous one deleted, until a batch deletes fewer rows than its size."""
        total, after, size = 0, WORKFLOW_START, self._settings.janitor_batch
        while stopping is None or not stopping.is_set():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{self._lock_timeout}'")
                rows = await conn.fetch(WORKFLOWS_SQL, cutoff, size, *after)
            total += len(rows)
            if len(rows) < size:
                break
            after = max((r["updated_at"], r["notification_id"]) for r in rows)
            await asyncio.sleep(0)  # let the pool's other users in between batches
        return total

    async def run(self, stopping: asyncio.Event) -> None:
        """Sweep every ``janitor_interval_s`` until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                result = await self.sweep(self._clock.now(), stopping)
                if result.read_archived or result.expired_archived:
                    log.info(
                        "inbox janitor: archived %d read and %d expired rows in %d batches",
                        result.read_archived,
                        result.expired_archived,
                        result.batches,
                    )
                if result.timers_deleted or result.workflows_deleted:
                    log.info(
                        "inbox janitor: deleted %d finished timers and %d finished workflow runs",
                        result.timers_deleted,
                        result.workflows_deleted,
                    )
            except (OSError, asyncpg.PostgresError) as exc:
                # Lock timeouts and outages alike: try again next interval.
                metrics.DEPENDENCY_ERRORS.labels("postgres", "inbox-janitor").inc()
                log.warning("inbox janitor: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._settings.janitor_interval_s)


async def build(res: Resources, _: ProcessOptions) -> ProcessSpec:
    janitor = InboxJanitor(
        await res.pool(),
        res.settings.in_app,
        res.clock,
        receipt_window_days=res.settings.fallback.receipt_window_days,
        fanout_cursor_keep=FINISHED_FANOUT_KEEP,
        finished_keep=FINISHED_KEEP,
        failed_timer_keep=FAILED_TIMER_KEEP,
    )
    return ProcessSpec(loops=[janitor.run])
