"""Moving inbox rows to ``herald_inbox_archive``: used by the janitor and by the API's archive action.

A move is one statement (``DELETE … RETURNING`` feeding an ``INSERT``), so a row is always in
exactly one of the two tables. The month's partition is created first if it does not exist.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from consumers.inbox.archive import ARCHIVE_TABLE, partition_for

__all__ = ["COLUMNS", "archive_user_rows", "ensure_partition", "move_sql"]

COLUMNS = (
    "id, user_id, notification_id, type, category, title, body, data, idempotency_key, read_at, created_at, "
    "expires_at, tenant"
)


def move_sql(select_ids: str) -> str:
    """The statement moving the rows ``select_ids`` picks; ``archived_at`` is the last parameter."""
    return f"""
WITH moved AS (DELETE FROM herald_inbox WHERE id IN ({select_ids}) RETURNING {COLUMNS})
INSERT INTO {ARCHIVE_TABLE} ({COLUMNS}, archived_at) SELECT {COLUMNS}, $3 FROM moved RETURNING id
"""


_USER_ROWS = move_sql(
    "SELECT id FROM herald_inbox WHERE user_id = $1 AND tenant = $4 AND id = ANY($2::uuid[])"
)


async def ensure_partition(conn: asyncpg.Connection | asyncpg.Pool, at: datetime) -> None:
    """Create the archive partition of ``at``'s month unless it exists."""
    part = partition_for(at)
    with contextlib.suppress(asyncpg.DuplicateTableError):  # another process made it meanwhile
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {part.name} PARTITION OF {ARCHIVE_TABLE} "
            f"FOR VALUES FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
        )


async def archive_user_rows(
    pool: asyncpg.Pool, user_id: str, ids: Sequence[uuid.UUID], now: datetime, tenant: str = ""
) -> list[uuid.UUID]:
    """Move ``user_id``'s (in ``tenant``) rows among ``ids`` to the archive; return the ids moved."""
    await ensure_partition(pool, now)
    rows = await pool.fetch(_USER_ROWS, user_id, list(ids), now, tenant)
    return [r["id"] for r in rows]
