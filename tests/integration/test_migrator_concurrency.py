"""The migrator against what runs beside it: a second migrator waiting for the first one's
``CREATE INDEX CONCURRENTLY`` (no deadlock: it never waits in a statement), and an old transaction
that holds a concurrent build back past the pool's command timeout (the build waits; past the
migrator's own bound it is MigrationBlocked, naming pg_stat_activity)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.infra.db import NO_TRANSACTION, MigrationBlocked, connect_pool, migrate
from tests.pg_helpers import own_database


@pytest_asyncio.fixture(loop_scope="session")
async def url(stack: DevStack) -> AsyncIterator[str]:
    async with own_database(stack.database_url, "herald_migcc") as db_url:
        yield db_url


def _files(directory: Path) -> None:
    # a table, a slow transactional file (the second migrator is surely waiting by the build), a build
    (directory / "001_t.sql").write_text("CREATE TABLE t (id int PRIMARY KEY, v int);\n")
    (directory / "002_slow.sql").write_text("SELECT pg_sleep(1.5);\n")
    (directory / "003_index.sql").write_text(
        f"{NO_TRANSACTION}\nDROP INDEX CONCURRENTLY IF EXISTS t_v;\nCREATE INDEX CONCURRENTLY t_v ON t (v);\n"
    )


async def test_two_migrators_at_once_both_finish(url: str, tmp_path: Path) -> None:
    _files(tmp_path)
    first = await connect_pool(url, min_size=1, max_size=1)
    second = await connect_pool(url, min_size=1, max_size=1)
    try:
        a = asyncio.create_task(migrate(first, tmp_path, poll_s=0.1))
        await asyncio.sleep(0.3)  # the first holds the lock and sleeps in 002
        b = asyncio.create_task(migrate(second, tmp_path, poll_s=0.1))
        # pg_advisory_lock in b held a snapshot the build waited for: DeadlockDetectedError
        applied = await asyncio.wait_for(asyncio.gather(a, b), 30)
        assert sorted(applied, key=len) == [[], ["001_t.sql", "002_slow.sql", "003_index.sql"]]
        valid = await first.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v'::regclass")
        assert valid is True
    finally:
        await first.close()
        await second.close()


async def test_a_build_behind_an_old_transaction_waits_past_the_command_timeout(
    url: str, tmp_path: Path
) -> None:
    _files(tmp_path)
    (tmp_path / "002_slow.sql").write_text("SELECT 1;\n")
    # the pool's command timeout is short here; the migration statements are not bound by it
    pool = await connect_pool(url, min_size=1, max_size=2, command_timeout_s=1.0)
    old = await asyncpg.connect(url)
    try:
        await migrate(pool, tmp_path.joinpath("none"))  # herald_migrations exists
        await pool.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        await pool.execute("INSERT INTO herald_migrations (name) VALUES ('001_t.sql'), ('002_slow.sql')")
        tx = old.transaction(isolation="repeatable_read")
        await tx.start()
        await old.fetchval("SELECT count(*) FROM t")  # a snapshot older than the build (a pg_dump's)
        build = asyncio.create_task(migrate(pool, tmp_path))
        await asyncio.sleep(2.5)  # past the command timeout: still waiting, not failed
        assert not build.done()
        await tx.rollback()
        assert await asyncio.wait_for(build, 30) == ["003_index.sql"]
    finally:
        await old.close()
        await pool.close()


async def test_a_build_held_back_past_the_migrators_bound_is_blocked(url: str, tmp_path: Path) -> None:
    _files(tmp_path)
    pool = await connect_pool(url, min_size=1, max_size=2)
    old = await asyncpg.connect(url)
    try:
        await migrate(pool, tmp_path.joinpath("none"))
        await pool.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        await pool.execute("INSERT INTO herald_migrations (name) VALUES ('001_t.sql'), ('002_slow.sql')")
        tx = old.transaction(isolation="repeatable_read")
        await tx.start()
        await old.fetchval("SELECT count(*) FROM t")
        with pytest.raises(MigrationBlocked, match=r"003_index\.sql.*pg_stat_activity"):
            await migrate(pool, tmp_path, timeout_s=1.5)
        await tx.rollback()
        # the failed build left an INVALID index; the file runs again and replaces it
        assert await migrate(pool, tmp_path) == ["003_index.sql"]
        assert await pool.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v'::regclass")
    finally:
        await old.close()
        await pool.close()


async def test_a_migration_that_lost_a_deadlock_is_tried_again(url: str, tmp_path: Path) -> None:
    # A backfill's UPDATE ... FROM against a fallback batch's ordered row locks: PostgreSQL ends
    # one with 40P01. A sequence is not rolled back: the first try deadlocks, the second applies.
    (tmp_path / "001_seq.sql").write_text("CREATE SEQUENCE tries;\n")
    (tmp_path / "002_backfill.sql").write_text(
        "CREATE TABLE filled (id int);\n"
        "DO $$ BEGIN IF nextval('tries') < 2 THEN "
        "RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END IF; END $$;\n"
    )
    pool = await connect_pool(url, min_size=1, max_size=1)
    try:
        assert await migrate(pool, tmp_path, pause_s=0.01) == ["001_seq.sql", "002_backfill.sql"]
        assert await pool.fetchval("SELECT count(*) FROM filled") == 0  # created once, by the second try
    finally:
        await pool.close()
