"""Migrations leave nothing on the pool's connections: the pool skips asyncpg's reset
(``consumers.infra.db._keep_session``), so a failed migration must not return a connection that
still holds the migration lock, and a migration's plain ``SET`` must not outlive it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.infra.db import _LOCK_ID, connect_pool, migrate
from tests.pg_helpers import own_database
from tests.waiting import until


@pytest_asyncio.fixture(loop_scope="session")
async def one_connection(stack: DevStack) -> AsyncIterator[asyncpg.Pool]:
    """A pool of exactly one connection on a database of its own: whatever a migration leaves on
    that connection, the next caller gets."""
    async with own_database(stack.database_url, "herald_mig") as url:
        pool = await connect_pool(url, min_size=1, max_size=1)
        try:
            yield pool
        finally:
            await pool.close()


async def _lock_holders(pool: asyncpg.Pool) -> int:
    key = _LOCK_ID & 0xFFFFFFFF  # an advisory lock on a bigint shows its low 32 bits as objid
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted",
        key,
    )
    return count


async def _granted_elsewhere(watcher: asyncpg.Connection, database: str) -> int:
    """Migration locks granted on ``database``, seen from a connection outside the pool."""
    count: int = await watcher.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted AND d.datname = $2",
        _LOCK_ID & 0xFFFFFFFF,
        database,
    )
    return count


@pytest.mark.parametrize("how", ["refused", "cancelled"])
async def test_a_failed_migration_leaves_no_lock_on_the_pool(
    one_connection: asyncpg.Pool, stack: DevStack, tmp_path: Path, how: str
) -> None:
    if how == "refused":
        (tmp_path / "001_broken.sql").write_text("CREATE TABLE herald_x (;")
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await migrate(one_connection, tmp_path)
    else:  # a process stopped while a migration runs, the lock granted
        (tmp_path / "001_broken.sql").write_text("SELECT pg_sleep(30)")
        database = await one_connection.fetchval("SELECT current_database()")
        watcher = await asyncpg.connect(stack.database_url)  # the pool's one connection is busy

        async def granted() -> bool:
            return await _granted_elsewhere(watcher, database) > 0

        task = asyncio.create_task(migrate(one_connection, tmp_path))
        try:  # cancelled before the grant, the test would pass with nothing to clean up
            await until(granted, what="the migration holds its lock", timeout=10)
        finally:
            await watcher.close()
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await _lock_holders(one_connection) == 0
    # The next migrator, on the same one-connection pool, is not stopped by a lock left behind.
    (tmp_path / "001_broken.sql").write_text("CREATE TABLE herald_x (id int)")
    async with asyncio.timeout(10):
        assert await migrate(one_connection, tmp_path) == ["001_broken.sql"]


async def test_a_migrations_session_setting_does_not_outlive_it(
    one_connection: asyncpg.Pool, tmp_path: Path
) -> None:
    before = await one_connection.fetchval("SHOW lock_timeout")
    (tmp_path / "001_set.sql").write_text("SET lock_timeout = '1234ms'; CREATE TABLE herald_y (id int)")
    assert await migrate(one_connection, tmp_path) == ["001_set.sql"]
    assert await one_connection.fetchval("SHOW lock_timeout") == before
    assert await _lock_holders(one_connection) == 0
