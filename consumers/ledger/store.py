"""Writing the activity store: batched idempotent inserts, day partitions made on demand and
dropped whole by retention (migration 220_activity.sql)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import asyncpg

from channels.storage_errors import PG_CALL_ERRORS, PG_OUTAGES, classify_pg_error
from consumers.infra.db import DatabaseUnavailable
from consumers.ledger.rows import (
    COLUMNS,
    ActivityRow,
    columns_of,
    expired_partitions,
    oldest_kept_day,
    partition_bounds,
    partition_day,
    partition_name,
)
from schemas.errors import RecordError

__all__ = ["OUTAGES", "ActivityWriter"]

log = logging.getLogger(__name__)

# PostgreSQL is down or the connection broke: the batch is retried.
OUTAGES = PG_OUTAGES

_TYPES = {
    "anchor_at": "timestamptz",
    "recorded_at": "timestamptz",
    "not_before": "timestamptz",
    "attempt": "integer",
    "kafka_partition": "integer",
    "kafka_offset": "bigint",
}
_INSERT = (
    f"INSERT INTO herald_activity ({', '.join(COLUMNS)}) "
    "SELECT * FROM unnest("
    + ", ".join(f"${i}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(COLUMNS, start=1))
    + ") ON CONFLICT DO NOTHING"
)
_PARTITIONS = """
SELECT c.relname FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE p.relname = 'herald_activity'
"""
_LOCK_ID = 0x4C45444752  # "LEDGR": one partition creator at a time across ledger processes


class ActivityWriter:
    """Inserts activity rows; one multi-row ``INSERT ... SELECT unnest(...)`` per batch."""

    def __init__(self, pool: asyncpg.Pool, retention_days: int) -> None:
        self.pool = pool
        self.retention_days = retention_days
        self._known: set[date] = set()

    async def insert(self, rows: Sequence[ActivityRow], today: date) -> int:
        """Insert ``rows`` (already-present ones are skipped); rows of days retention has already
        dropped are not written. Returns how many rows were new.

        Raises :class:`~schemas.errors.RecordError` (``invalid_record``) when PostgreSQL refused a
        row's values (:func:`~channels.storage_errors.classify_pg_error`), else
        :class:`~consumers.infra.db.DatabaseUnavailable`."""
        first = oldest_kept_day(today, self.retention_days)
        kept = [r for r in rows if partition_day(r.anchor_at) >= first]
        if not kept:
            return 0
        try:
            await self.ensure_partitions({partition_day(r.anchor_at) for r in kept})
            async with self.pool.acquire() as conn:
                status: str = await conn.execute(_INSERT, *columns_of(kept))
        except PG_CALL_ERRORS as exc:
            if classify_pg_error(exc) == "record":  # e.g. an index row too large for a huge value
                raise RecordError(
                    f"activity store refused: {type(exc).__name__}: {exc}", reason="invalid_record"
                ) from exc
            raise DatabaseUnavailable(f"activity store: {type(exc).__name__}: {exc}") from exc
        return int(status.rsplit(" ", 1)[1])

    async def ensure_partitions(self, days: Iterable[date]) -> None:
        missing = sorted(set(days) - self._known)
        if not missing:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            existing = {r["relname"] for r in await conn.fetch(_PARTITIONS)}
            for day in missing:
                name = partition_name(day)
                if name not in existing:
                    start, end = partition_bounds(day)
                    # Identifiers and bounds come from a date, never from a record's text.
                    await conn.execute(
                        f"CREATE TABLE {name} PARTITION OF herald_activity "
                        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
                    log.info("activity store: created partition %s", name)
        self._known.update(missing)

    async def partitions(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return sorted(r["relname"] for r in await conn.fetch(_PARTITIONS))

    async def apply_retention(self, today: date) -> list[str]:
        """Drop every partition older than the retention, and make today's and tomorrow's ahead of
        time (so the first rows after midnight do not wait on DDL). Returns what was dropped."""
        dropped = expired_partitions(await self.partitions(), today, self.retention_days)
        async with self.pool.acquire() as conn:
            for name in dropped:
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
                log.info(
                    "activity store: dropped partition %s (retention %d days)", name, self.retention_days
                )
        self._known = {d for d in self._known if partition_name(d) not in dropped}
        await self.ensure_partitions([today, today + timedelta(days=1)])
        return dropped
