"""Inbox reads the API needs beyond :class:`channels.in_app.inbox_pg.InboxService`: the whole inbox
(unread first, then read), single rows, ownership checks, and the stream's replay.

Pages are keyset, never OFFSET. A cursor names the section (unread ``u`` or read ``r``) and the
``(created_at, id)`` of the page's last row, so rows that arrive while a client pages (newer,
hence before the cursor) never shift or repeat a later page. Each section walks its own
partial index: ``herald_inbox_unread`` and ``herald_inbox_read`` (both on (tenant, user_id, ...)
since migration 230). Every query is scoped by (user, tenant); ``''`` is the default tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from channels.in_app.inbox_pg import InboxItem, decode_cursor, encode_cursor, inbox_item

InboxRow = InboxItem  # an inbox row as the API shows it (read_at included)

__all__ = ["InboxQueries", "InboxRow", "ListPage", "decode_list_cursor", "encode_list_cursor"]

Section = Literal["u", "r"]

_COLUMNS = "id, notification_id, type, category, title, body, data, created_at, read_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > now())"
_SECTION_SQL = {"u": "read_at IS NULL", "r": "read_at IS NOT NULL"}


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[InboxRow]
    next_cursor: str | None


def encode_list_cursor(section: Section, row: InboxRow) -> str:
    return f"{section}.{encode_cursor(row.created_at, row.id)}"


def decode_list_cursor(cursor: str) -> tuple[Section, datetime, uuid.UUID]:
    """Raises ValueError on a cursor we did not make."""
    section, dot, rest = cursor.partition(".")
    if not dot or section not in ("u", "r"):
        raise ValueError("invalid cursor")
    created_at, id_ = decode_cursor(rest)
    return ("u" if section == "u" else "r"), created_at, id_


class InboxQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _section(
        self,
        user_id: str,
        tenant: str,
        section: Section,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[InboxRow]:
        where = f"user_id = $1 AND tenant = $3 AND {_SECTION_SQL[section]} AND {_LIVE}"
        args: list[Any] = [user_id, limit, tenant]
        if after is not None:
            where += " AND (created_at, id) < ($4, $5)"
            args += list(after)
        sql = f"SELECT {_COLUMNS} FROM herald_inbox WHERE {where} ORDER BY created_at DESC, id DESC LIMIT $2"
        return [inbox_item(r) for r in await self._pool.fetch(sql, *args)]

    async def page(
        self, user_id: str, *, limit: int, cursor: str | None, unread_only: bool, tenant: str = ""
    ) -> ListPage:
        """Unread rows newest first, then (unless ``unread_only``) read rows newest first."""
        section: Section = "u"
        after: tuple[datetime, uuid.UUID] | None = None
        if cursor is not None:
            section, created_at, id_ = decode_list_cursor(cursor)
            after = (created_at, id_)
            if unread_only and section == "r":
                return ListPage([], None)
        tagged: list[tuple[Section, InboxRow]] = []
        rows = await self._section(user_id, tenant, section, limit + 1, after)
        tagged += [(section, r) for r in rows]
        if section == "u" and len(tagged) <= limit and not unread_only:
            rows = await self._section(user_id, tenant, "r", limit + 1 - len(tagged), None)
            tagged += [("r", r) for r in rows]
        page = tagged[:limit]
        more = len(tagged) > limit
        return ListPage([r for _, r in page], encode_list_cursor(*page[-1]) if more and page else None)

    async def get(self, user_id: str, id_: uuid.UUID, tenant: str = "") -> InboxRow | None:
        r = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM herald_inbox WHERE id = $1 AND user_id = $2 AND tenant = $3 AND {_LIVE}",
            id_,
            user_id,
            tenant,
        )
        return inbox_item(r) if r is not None else None

    async def owned(self, user_id: str, ids: Sequence[uuid.UUID], tenant: str = "") -> set[uuid.UUID]:
        """The ids among ``ids`` that are this user's (another user's id looks like a missing one)."""
        rows = await self._pool.fetch(
            "SELECT id FROM herald_inbox WHERE user_id = $1 AND tenant = $3 AND id = ANY($2::uuid[])",
            user_id,
            list(ids),
            tenant,
        )
        return {r["id"] for r in rows}

    async def since(self, user_id: str, event_id: str, limit: int, tenant: str = "") -> list[InboxRow]:
        """Rows created after the one ``event_id`` names, oldest first (a stream's replay)."""
        created_at, id_ = decode_cursor(event_id)
        part = (
            f"(SELECT {_COLUMNS} FROM herald_inbox WHERE user_id = $1 AND tenant = $5 AND {{section}} AND {_LIVE} "
            "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4)"
        )
        sql = (
            f"{part.format(section=_SECTION_SQL['u'])} UNION ALL {part.format(section=_SECTION_SQL['r'])} "
            "ORDER BY created_at, id LIMIT $4"
        )
        return [inbox_item(r) for r in await self._pool.fetch(sql, user_id, created_at, id_, limit, tenant)]
