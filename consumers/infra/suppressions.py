"""The suppression list (PostgreSQL): addresses Herald will not send to, and soft-bounce counts.

Written by the provider feedback endpoints and ``herald suppressions``; read by the email channel
consumer before every provider call (one query per batch). An address PostgreSQL refuses to
compare (a NUL, a lone surrogate) is the message's fault: a :class:`~schemas.errors.RecordError`
(``invalid_address``); an outage raises :class:`~consumers.infra.db.DatabaseUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from consumers.infra.db import DatabaseUnavailable
from schemas.errors import RecordError

__all__ = ["Suppression", "SuppressionStore"]


@dataclass(frozen=True, slots=True)
class Suppression:
    channel: str
    address: str
    reason: str
    source: str
    detail: str | None
    created_at: datetime


class SuppressionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self, channel: str, addresses: Iterable[str], *, reason: str, source: str, detail: str | None = None
    ) -> int:
        """Suppress ``addresses`` (lower-cased); an address already on the list keeps its first reason."""
        unique = sorted({a.strip().lower() for a in addresses if a.strip()})
        if not unique:
            return 0
        status = await self.pool.execute(
            "INSERT INTO herald_suppressions (channel, address, reason, source, detail) "
            "SELECT $1, a, $3, $4, $5 FROM unnest($2::text[]) AS a ON CONFLICT (channel, address) DO NOTHING",
            channel,
            unique,
            reason,
            source,
            detail,
        )
        return int(str(status).rsplit(" ", 1)[1])

    async def remove(self, channel: str, address: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM herald_suppressions WHERE channel = $1 AND address = $2",
            channel,
            address.strip().lower(),
        )
        return str(status).endswith(" 1")

    async def suppressed(self, channel: str, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` (compared lower-cased) are on the list; returned as given."""
        given = {a: a.strip().lower() for a in addresses}
        if not given:
            return set()
        try:
            rows = await self.pool.fetch(
                "SELECT address FROM herald_suppressions WHERE channel = $1 AND address = ANY($2::text[])",
                channel,
                list(set(given.values())),
            )
        except PG_CALL_ERRORS as exc:
            if classify_pg_error(exc) == "record":  # an address PostgreSQL cannot even compare
                raise RecordError(
                    f"suppression list lookup refused: {type(exc).__name__}: {exc}", reason="invalid_address"
                ) from exc
            # Not knowing is not "not suppressed": the consumer pauses until PostgreSQL answers.
            raise DatabaseUnavailable(f"suppression list unavailable: {exc}") from exc
        hit = {r["address"] for r in rows}
        return {a for a, low in given.items() if low in hit}

    async def list(self, channel: str | None = None, *, limit: int = 100) -> list[Suppression]:
        rows = await self.pool.fetch(
            "SELECT channel, address, reason, source, detail, created_at FROM herald_suppressions "
            "WHERE $1::text IS NULL OR channel = $1 ORDER BY created_at DESC, address LIMIT $2",
            channel,
            limit,
        )
        return [Suppression(**dict(r)) for r in rows]

    async def count_soft_bounce(self, channel: str, addresses: Iterable[str], at: datetime) -> None:
        rows = [(channel, a.strip().lower(), at) for a in addresses if a.strip()]
        if rows:
            await self.pool.executemany(
                "INSERT INTO herald_soft_bounces (channel, address, count, last_at) VALUES ($1, $2, 1, $3) "
                "ON CONFLICT (channel, address) DO UPDATE SET count = herald_soft_bounces.count + 1, "
                "last_at = greatest(herald_soft_bounces.last_at, EXCLUDED.last_at)",
                rows,
            )

    async def soft_bounces(self, channel: str, address: str) -> int:
        count = await self.pool.fetchval(
            "SELECT count FROM herald_soft_bounces WHERE channel = $1 AND address = $2",
            channel,
            address.strip().lower(),
        )
        return int(count or 0)
