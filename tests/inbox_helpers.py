"""An isolated copy of ``herald_inbox`` (same columns, defaults and indexes) in a fresh schema,
for tests that sweep or bulk-load the whole table without touching other tests' rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

__all__ = ["isolated_inbox"]


@asynccontextmanager
async def isolated_inbox(shared: asyncpg.Pool, dsn: str, *, max_size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose ``search_path`` finds a private ``herald_inbox`` and archive; dropped afterwards."""
    schema = f"inbox_{uuid.uuid4().hex[:10]}"
    await shared.execute(f"CREATE SCHEMA {schema}")
    await shared.execute(f"CREATE TABLE {schema}.herald_inbox (LIKE public.herald_inbox INCLUDING ALL)")
    await shared.execute(
        f"CREATE TABLE {schema}.herald_inbox_archive (LIKE public.herald_inbox_archive INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (archived_at)"
    )
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, server_settings={"search_path": f"{schema},public"}
    )
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()
        await shared.execute(f"DROP SCHEMA {schema} CASCADE")
