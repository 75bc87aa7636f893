"""Migration 277 on a database that was running before it: console sessions opened with an admin
key take the key's id from their operator text, so revoking the key ends them too."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest_asyncio

from consumers.console.auth import SessionStore, digest
from consumers.devstack import DevStack
from consumers.infra.db import MIGRATIONS, migrate
from tests.pg_helpers import migrated_before

TARGET = "277_console_session_key.sql"


@pytest_asyncio.fixture(loop_scope="session")
async def before_277(stack: DevStack, tmp_path: Path) -> AsyncIterator[tuple[asyncpg.Pool, Path]]:
    """A database of its own, migrated up to (not including) 277, and the migrations directory."""
    async with migrated_before(stack.database_url, TARGET, tmp_path) as pool:
        yield pool, tmp_path


async def test_sessions_from_before_end_with_their_key(before_277: tuple[asyncpg.Pool, Path]) -> None:
    pool, migrations = before_277
    now = datetime.now(UTC)
    for key_id, revoked in (("0a1b2c3d4e5f", now), ("ffeeddccbbaa", None)):
        await pool.execute(
            "INSERT INTO herald_api_keys (key_id, name, secret_hash, scopes, revoked_at) "
            "VALUES ($1, 'ops', '\\x00', '{admin}', $2)",
            key_id,
            revoked,
        )
    sessions = {"revoked": "key:0a1b2c3d4e5f (ops)", "live": "key:ffeeddccbbaa (ops)", "link": "link:ana"}
    for token, operator in sessions.items():
        await pool.execute(
            "INSERT INTO herald_console_sessions (token_hash, operator, csrf_token, expires_at) "
            "VALUES ($1, $2, 'c', $3)",
            digest(token),
            operator,
            now + timedelta(hours=1),
        )
    shutil.copy(MIGRATIONS / TARGET, migrations / TARGET)
    await migrate(pool, migrations)
    store = SessionStore(pool, 3600)
    assert await store.get("revoked", now) is None
    live = await store.get("live", now)
    assert live is not None and live.operator.key_id == "ffeeddccbbaa"
    link = await store.get("link", now)
    assert link is not None and link.operator.key_id is None
