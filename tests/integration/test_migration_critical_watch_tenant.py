"""Migration 262 on a database that was running before it: critical checks take their inbox row's
tenant, else their workflow's, else the default tenant's."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.infra.db import MIGRATIONS, migrate
from tests.pg_helpers import own_database

T0 = datetime(2026, 11, 10, tzinfo=UTC)
TARGET = "262_critical_watch_tenant.sql"


@pytest_asyncio.fixture(loop_scope="session")
async def before_262(stack: DevStack, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own, migrated up to (not including) 262."""
    async with own_database(stack.database_url, "herald_m262") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        assert pool is not None
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name < TARGET:
                shutil.copy(path, tmp_path / path.name)
        await migrate(pool, tmp_path)
        try:
            yield pool
        finally:
            await pool.close()


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
    assert TARGET in await migrate(pool)
    rows = await pool.fetch(
        "SELECT notification_id, tenant FROM herald_critical_watch ORDER BY notification_id"
    )
    assert {r["notification_id"]: r["tenant"] for r in rows} == {
        "n-acme": "acme",
        "n-default": "",
        "n-globex": "globex",
        "n-unknown": "",
    }
    index = await pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'herald_critical_watch_user'"
    )
    assert "(user_id, tenant)" in index
