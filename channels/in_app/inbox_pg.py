"""The in-app inbox in PostgreSQL (``herald_inbox``, migration 002).

Every query is scoped by (tenant, user id): the same user id in two tenants has two inboxes
(tenant ``''`` is the default tenant). Unread reads walk the partial index
``herald_inbox_unread (tenant, user_id, created_at DESC, id DESC) WHERE read_at IS NULL``, so millions
of read rows do not slow them down; pages are keyset (``(created_at, id) <`` the cursor),
never OFFSET, so they stay stable while new rows arrive. Rows past ``expires_at`` are hidden
here and deleted by the janitor.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

__all__ = [
    "GET_UNREAD_FIRST_SQL",
    "GET_UNREAD_NEXT_SQL",
    "UNREAD_COUNT_SQL",
    "InboxItem",
    "InboxService",
    "Page",
    "ReadRow",
    "decode_cursor",
    "encode_cursor",
    "inbox_item",
]

_COLUMNS = "id, notification_id, type, category, title, body, data, created_at, expires_at"
_UNREAD = "user_id = $1 AND tenant = $2 AND read_at IS NULL AND (expires_at IS NULL OR expires_at > now())"

GET_UNREAD_FIRST_SQL = (
    f"SELECT {_COLUMNS} FROM herald_inbox WHERE {_UNREAD} ORDER BY created_at DESC, id DESC LIMIT $3"
)
GET_UNREAD_NEXT_SQL = (
    f"SELECT {_COLUMNS} FROM herald_inbox WHERE {_UNREAD} AND (created_at, id) < ($4, $5) "
    "ORDER BY created_at DESC, id DESC LIMIT $3"
)
UNREAD_COUNT_SQL = f"SELECT count(*) FROM herald_inbox WHERE {_UNREAD}"


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: uuid.UUID
    notification_id: str
    type: str
    category: str
    title: str
    body: str | None
    data: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    read_at: datetime | None = None

    @property
    def event_id(self) -> str:
        """The SSE event id: where a reconnecting stream resumes (``Last-Event-ID``)."""
        return encode_cursor(self.created_at, self.id)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[InboxItem]
    next_cursor: str | None  # None: no more pages


@dataclass(frozen=True, slots=True)
class ReadRow:
    """A row that is read (what a caller publishes a ``read`` receipt for)."""

    id: uuid.UUID
    notification_id: str
    user_id: str
    read_at: datetime


def encode_cursor(created_at: datetime, id_: uuid.UUID) -> str:
    """Opaque to clients: the (created_at, id) of the last row of a page."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{id_}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError on a cursor we did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, id_ = raw.partition("|")
        created_at = datetime.fromisoformat(when)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if created_at.tzinfo is None:
        raise ValueError("invalid cursor")
    try:
        # Into range before SQL: 0001-01-01T00:00:00+14:00 parses, but lies before datetime.min in
        # UTC and PostgreSQL's driver would fail on it (a 500, or a cut stream as Last-Event-ID).
        created_at = created_at.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("invalid cursor: date out of range") from exc
    return created_at, uuid.UUID(id_)


def inbox_item(row: asyncpg.Record) -> InboxItem:
    """An ``herald_inbox`` row (``read_at`` when the query selected it)."""
    data = row["data"]
    return InboxItem(
        id=row["id"],
        notification_id=row["notification_id"],
        type=row["type"],
        category=row["category"],
        title=row["title"],
        body=row["body"],
        data=json.loads(data) if isinstance(data, str) else dict(data),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        read_at=row.get("read_at"),
    )


def _read_rows(rows: Sequence[asyncpg.Record]) -> list[ReadRow]:
    return [ReadRow(r["id"], r["notification_id"], r["user_id"], r["read_at"]) for r in rows]


class InboxService:
    """create / get_unread / unread_count / mark_read / mark_all_read (module doc)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        *,
        user_id: str,
        notification_id: str,
        type_: str,
        category: str,
        title: str,
        body: str | None,
        idempotency_key: str,
        data: Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
        tenant: str = "",
    ) -> tuple[uuid.UUID, bool]:
        """``(row id, created)``. A redelivered message (same key) returns the existing row's id."""
        data_json = json.dumps(dict(data or {}), separators=(",", ":"), default=str)
        async with self._pool.acquire() as conn:
            new_id = await conn.fetchval(
                """
                INSERT INTO herald_inbox (user_id, notification_id, type, category, title, body, data,
                                          idempotency_key, expires_at, tenant)
                VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING id
                """,
                user_id,
                notification_id,
                type_,
                category,
                title,
                body,
                data_json,
                idempotency_key,
                expires_at,
                tenant,
            )
            if new_id is not None:
                return new_id, True
            existing = await conn.fetchval(
                "SELECT id FROM herald_inbox WHERE idempotency_key = $1", idempotency_key
            )
        if existing is None:  # deleted by the janitor between the two statements: nothing to redo
            raise LookupError(f"inbox row of {idempotency_key} vanished")
        return existing, False

    async def get_unread(
        self, user_id: str, *, limit: int = 50, cursor: str | None = None, tenant: str = ""
    ) -> Page:
        """Newest first. Pass ``next_cursor`` back for the following page."""
        limit = max(1, min(limit, 500))
        if cursor is None:
            rows = await self._pool.fetch(GET_UNREAD_FIRST_SQL, user_id, tenant, limit + 1)
        else:
            created_at, id_ = decode_cursor(cursor)
            rows = await self._pool.fetch(GET_UNREAD_NEXT_SQL, user_id, tenant, limit + 1, created_at, id_)
        items = [inbox_item(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].created_at, items[-1].id) if more and items else None)

    async def unread_count(self, user_id: str, tenant: str = "") -> int:
        count: int = await self._pool.fetchval(UNREAD_COUNT_SQL, user_id, tenant)
        return count

    async def mark_read(self, user_id: str, ids: Sequence[uuid.UUID], tenant: str = "") -> list[ReadRow]:
        """Mark the user's rows among ``ids`` read; returns every one of them that is read,
        including those read before (with their first read time), so a caller that failed
        to publish receipts can simply call again. Other users' ids are ignored."""
        if not ids:
            return []
        rows = await self._pool.fetch(
            """
            UPDATE herald_inbox SET read_at = COALESCE(read_at, now())
             WHERE user_id = $1 AND tenant = $3 AND id = ANY($2::uuid[])
            RETURNING id, notification_id, user_id, read_at
            """,
            user_id,
            list(ids),
            tenant,
        )
        return _read_rows(rows)

    async def mark_all_read(self, user_id: str, tenant: str = "") -> list[ReadRow]:
        """Mark every unread row of the user read; returns the rows it changed."""
        rows = await self._pool.fetch(
            """
            UPDATE herald_inbox SET read_at = now()
             WHERE user_id = $1 AND tenant = $2 AND read_at IS NULL
            RETURNING id, notification_id, user_id, read_at
            """,
            user_id,
            tenant,
        )
        return _read_rows(rows)
