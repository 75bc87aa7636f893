"""Migrations 262-264 on a database that was running before them: critical checks take their inbox
row's tenant, else their workflow's, else none (unknown); the index is built concurrently. And the
migrator's lock timeout: a migration queued behind a long transaction gives way and tries again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.infra.db import MIGRATIONS, MigrationBlocked, migrate
from tests.pg_helpers import migrated_before
from tests.waiting import until

T0 = datetime(2026, 11, 10, tzinfo=UTC)
TARGET = "262_critical_watch_tenant.sql"


@pytest_asyncio.fixture(loop_scope="session")
async def before_262(stack: DevStack, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own, migrated up to (not including) 262."""
    async with migrated_before(stack.database_url, TARGET, tmp_path, max_size=3) as pool:
        yield pool


async def test_existing_critical_checks_take_their_tenant(before_262: asyncpg.Pool) -> None:
    pool = before_262
    # bob in acme (an in-app row), in globex (a workflow), in the default tenant, and one of unknown tenant
    await pool.execute(
        "INSERT INTO herald_inbox (user_id, tenant, notification_id, type, category, title, idempotency_key, "
        "created_at) VALUES ('bob', 'acme', 'n-acme', 'security_alert', 'security', 't', 'k', $1)",
        T0,
    )
    await pool.execute(
        "INSERT INTO herald_workflows (notification_id, event_id, user_id, tenant, route, event, created_at, "
        "updated_at) VALUES ('n-globex', 'e', 'bob', 'globex', 'security_alert', '\\x00', $1, $1)",
        T0,
    )
    await pool.execute(
        "INSERT INTO herald_inbox (user_id, tenant, notification_id, type, category, title, idempotency_key, "
        "created_at) VALUES ('bob', '', 'n-default', 'security_alert', 'security', 't', 'k2', $1)",
        T0,
    )
    for nid in ("n-acme", "n-globex", "n-default", "n-unknown"):
        await pool.execute(
            "INSERT INTO herald_critical_watch (notification_id, user_id, event_type, deadline) "
            "VALUES ($1, 'bob', 'security_alert', $2)",
            nid,
            T0,
        )
    assert await migrate(pool) == [
        TARGET,
        "263_critical_watch_tenant_backfill.sql",
        "264_critical_watch_user_index.sql",
        *[p.name for p in sorted(MIGRATIONS.glob("*.sql")) if p.name > "264_critical_watch_user_index.sql"],
    ]
    rows = await pool.fetch(
        "SELECT notification_id, tenant FROM herald_critical_watch ORDER BY notification_id"
    )
    assert {r["notification_id"]: r["tenant"] for r in rows} == {
        "n-acme": "acme",
        "n-default": "",
        "n-globex": "globex",
        "n-unknown": None,
    }
    index = await pool.fetchrow(
        "SELECT pg_get_indexdef(i.indexrelid) AS def, i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'herald_critical_watch_user'"
    )
    assert "(user_id, tenant)" in index["def"] and index["indisvalid"]


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_a_migration_behind_a_long_transaction_gives_way_and_tries_again(
    before_262: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    pool = before_262
    caplog.set_level(logging.WARNING, "consumers.infra.db")
    async with pool.acquire() as reader:
        tx = reader.transaction()
        await tx.start()
        # A long transaction that read the table: 262's ALTER TABLE waits for it.
        await reader.execute("SELECT count(*) FROM herald_critical_watch")
        migrating = asyncio.ensure_future(migrate(pool, lock_timeout_s=0.2, tries=20, pause_s=0.1))
        await until(lambda: _logged(caplog, "try 1 of 20"), what="262 gave way once", timeout=10)
        # Meanwhile other readers are not queued behind it for good: each try waits 0.2 s at most
        # (without the timeout this read waited behind the ALTER TABLE until the transaction ended).
        for _ in range(5):
            await asyncio.wait_for(pool.fetchval("SELECT count(*) FROM herald_critical_watch"), timeout=5)
        await tx.commit()
    applied = await asyncio.wait_for(migrating, timeout=30)
    assert applied[:3] == [
        TARGET,
        "263_critical_watch_tenant_backfill.sql",
        "264_critical_watch_user_index.sql",
    ]


async def test_a_migration_that_never_gets_its_lock_is_reported(before_262: asyncpg.Pool) -> None:
    pool = before_262
    async with pool.acquire() as reader, reader.transaction():
        await reader.execute("SELECT count(*) FROM herald_critical_watch")
        with pytest.raises(MigrationBlocked, match=TARGET):
            await migrate(pool, lock_timeout_s=0.1, tries=2, pause_s=0.05)
    assert await pool.fetchval("SELECT count(*) FROM herald_migrations WHERE name = $1", TARGET) == 0
