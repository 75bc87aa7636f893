"""Topics and their subscribers in PostgreSQL, scoped by tenant; subscribers page by user id (keyset)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from pydantic import BaseModel, Field

__all__ = ["SubscriberPage", "SubscribersIn", "TopicIn", "TopicOut", "TopicStore"]


class TopicIn(BaseModel, extra="forbid"):
    name: str | None = Field(None, max_length=200, description="A human name for the topic.")


class TopicOut(BaseModel):
    key: str
    tenant: str
    name: str | None
    subscribers: int
    created_at: datetime
    updated_at: datetime


class SubscribersIn(BaseModel, extra="forbid"):
    user_ids: list[str] = Field(min_length=1, max_length=1000)


class SubscriberPage(BaseModel):
    user_ids: list[str]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last.")


class TopicStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, tenant: str, key: str, name: str | None) -> bool:
        """Create or rename; True when created."""
        created: bool = await self.pool.fetchval(
            "INSERT INTO herald_topics AS t (tenant, key, name) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant, key) DO UPDATE SET name = $3, updated_at = now() RETURNING xmax = 0",
            tenant,
            key,
            name,
        )
        return created

    async def get(self, tenant: str, key: str) -> TopicOut | None:
        r = await self.pool.fetchrow(
            # Kept exact by triggers on herald_topic_subscribers (migration 275): no count(*) per read.
            "SELECT key, tenant, name, created_at, updated_at, subscriber_count AS subscribers "
            "FROM herald_topics WHERE tenant = $1 AND key = $2",
            tenant,
            key,
        )
        return TopicOut(**dict(r)) if r else None

    async def delete(self, tenant: str, key: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM herald_topics WHERE tenant = $1 AND key = $2", tenant, key
        )
        return bool(status.endswith(" 1"))

    async def add(self, tenant: str, key: str, user_ids: Sequence[str]) -> int | None:
        """Subscribe; the number newly subscribed, None when there is no such topic.

        No lock on the topic up front: the insert's trigger locks it to count the new rows, after
        the subscriber rows, as every other writer does (a share lock taken first would deadlock
        two calls on one topic). The foreign key answers a topic deleted meanwhile. Ids in order,
        so two calls with the same ids in another order wait for each other instead of deadlocking.
        """
        if not await self.pool.fetchval(
            "SELECT true FROM herald_topics WHERE tenant = $1 AND key = $2", tenant, key
        ):
            return None
        try:
            status = await self.pool.execute(
                "INSERT INTO herald_topic_subscribers (tenant, topic, user_id) "
                "SELECT $1, $2, u FROM unnest($3::text[]) AS u ON CONFLICT DO NOTHING",
                tenant,
                key,
                sorted(set(user_ids)),
            )
        except asyncpg.ForeignKeyViolationError:
            return None
        return int(status.rsplit(" ", 1)[-1])

    async def remove(self, tenant: str, key: str, user_ids: Sequence[str]) -> int | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                "SELECT true FROM herald_topics WHERE tenant = $1 AND key = $2", tenant, key
            ):
                return None
            status = await conn.execute(
                "DELETE FROM herald_topic_subscribers WHERE tenant = $1 AND topic = $2 AND user_id = ANY($3::text[])",
                tenant,
                key,
                sorted(set(user_ids)),
            )
        return int(status.rsplit(" ", 1)[-1])

    async def page(self, tenant: str, key: str, after: str, limit: int) -> list[str]:
        """Up to ``limit`` subscribers with user id > ``after``, in order (the primary key's order)."""
        rows = await self.pool.fetch(
            "SELECT user_id FROM herald_topic_subscribers WHERE tenant = $1 AND topic = $2 AND user_id > $3 "
            "ORDER BY user_id LIMIT $4",
            tenant,
            key,
            after,
            limit,
        )
        return [r["user_id"] for r in rows]
