"""PostgreSQL in tests beyond the shared ``pg_pool``: a database of one's own, for a test that must
see a schema or a connection no other test touches."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from consumers.infra.db import MIGRATIONS, migrate

__all__ = ["migrated_before", "own_database", "waits_for_a_lock"]


@asynccontextmanager
async def own_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database on ``server_url``'s server, dropped afterwards: its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


@asynccontextmanager
async def migrated_before(
    server_url: str, target: str, directory: Path, *, max_size: int = 2
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database of its own, migrated up to (not including) the migration file
    ``target``, whose earlier files are copied to ``directory`` (a test then adds the rest there)."""
    async with own_database(server_url, f"herald_m{target.split('_', 1)[0]}") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size)
        assert pool is not None
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name < target:
                shutil.copy(path, directory / path.name)
        await migrate(pool, directory)
        try:
            yield pool
        finally:
            await pool.close()


async def waits_for_a_lock(pool: asyncpg.Pool, application_name: str) -> bool:
    """Does a connection named ``application_name`` (pg_stat_activity) wait for a lock right now?"""
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 "
            "AND wait_event_type = 'Lock')",
            application_name,
        )
    )
