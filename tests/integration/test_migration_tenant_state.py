"""Migration 240 on a database that was running before it: delivery state keyed by user id only
takes its inbox row's tenant, else its recipient's when the id is a recipient of one tenant only,
else the default tenant's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.infra.db import migrate
from tests.pg_helpers import migrated_before

T0 = datetime(2026, 3, 10, tzinfo=UTC)
TARGET = "240_tenant_state.sql"


@pytest_asyncio.fixture(loop_scope="session")
async def before_240(stack: DevStack, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own, migrated up to (not including) 240."""
    async with migrated_before(stack.database_url, TARGET, tmp_path) as pool:
        yield pool


async def _inbox(pool: asyncpg.Pool, user: str, tenant: str, nid: str) -> uuid.UUID:
    row_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO herald_inbox (user_id, tenant, notification_id, type, category, title, idempotency_key, "
        "created_at) VALUES ($1, $2, $3, 'comment_reply', 'activity', 't', $3, $4) RETURNING id",
        user,
        tenant,
        nid,
        T0,
    )
    return row_id


async def test_existing_delivery_state_takes_its_tenant(before_240: asyncpg.Pool) -> None:
    pool = before_240
    # u1 and u3 are recipients of acme only; u2 of both the default tenant and acme.
    for tenant, user in (("acme", "u1"), ("", "u2"), ("acme", "u2"), ("acme", "u3")):
        await pool.execute("INSERT INTO herald_recipients (tenant, user_id) VALUES ($1, $2)", tenant, user)
    i1 = await _inbox(pool, "u1", "acme", "n1")
    i2 = await _inbox(pool, "u2", "", "n2")
    i3 = await _inbox(pool, "u2", "acme", "n3")
    sent = await pool.fetchval(
        "INSERT INTO herald_digests (user_id, window_start, send_at, idempotency_key, state) "
        "VALUES ('u2', $1, $1, 'k-sent', 'sent') RETURNING id",
        T0 - timedelta(days=1),
    )
    for user, key in (("u1", "k-u1"), ("u2", "k-u2")):
        await pool.execute(
            "INSERT INTO herald_digests (user_id, window_start, send_at, idempotency_key) VALUES ($1, $2, $2, $3)",
            user,
            T0,
            key,
        )
    for inbox_id, user, nid, digest_id in (
        (i1, "u1", "n1", None),
        (i2, "u2", "n2", None),
        (i3, "u2", "n3", sent),
    ):
        await pool.execute(
            "INSERT INTO herald_digest_items (inbox_id, user_id, notification_id, idempotency_key, event_id, "
            "event_type, joined_at, digest_id) VALUES ($1, $2, $3, $3, $3, 'comment_reply', $4, $5)",
            inbox_id,
            user,
            nid,
            T0,
            digest_id,
        )
    # Workflows: n1 and n3 have inbox rows (acme); n5 (u3) none but u3 is only acme's; n6 (u2) none.
    for nid, user in (("n1", "u1"), ("n3", "u2"), ("n5", "u3"), ("n6", "u2")):
        await pool.execute(
            "INSERT INTO herald_workflows (notification_id, event_id, user_id, route, event, created_at, "
            "updated_at) VALUES ($1, $1, $2, 'wf.comment', 'e'::bytea, $3, $3)",
            nid,
            user,
            T0,
        )
    for user, nid in (("u2", "n3"), ("u2", "n6")):
        digest_id = await pool.fetchval(
            "INSERT INTO herald_workflow_digests (user_id, route, window_start, send_at) "
            "VALUES ($1, $2, $3, $3) RETURNING id",
            user,
            f"wf.{nid}",
            T0,
        )
        await pool.execute(
            "INSERT INTO herald_workflow_digest_items (notification_id, digest_id, event, joined_at) "
            "VALUES ($1, $2, 'e'::bytea, $3)",
            nid,
            digest_id,
            T0,
        )
    for user in ("u2", "u3"):
        await pool.execute(
            "INSERT INTO herald_workflow_throttle (user_id, route, window_start, admitted) "
            "VALUES ($1, 'wf.m', $2, 1)",
            user,
            T0,
        )

    applied = await migrate(pool)  # 240, then whatever later migrations the tree has
    assert applied[0] == TARGET, applied

    items = await pool.fetch("SELECT notification_id, tenant FROM herald_digest_items ORDER BY 1")
    assert [(r[0], r[1]) for r in items] == [("n1", "acme"), ("n2", ""), ("n3", "acme")]
    digests = await pool.fetch("SELECT idempotency_key, tenant FROM herald_digests ORDER BY 1")
    assert [(r[0], r[1]) for r in digests] == [("k-sent", "acme"), ("k-u1", "acme"), ("k-u2", "")]
    flows = await pool.fetch("SELECT notification_id, tenant FROM herald_workflows ORDER BY 1")
    assert [(r[0], r[1]) for r in flows] == [("n1", "acme"), ("n3", "acme"), ("n5", "acme"), ("n6", "")]
    wf_digests = await pool.fetch("SELECT route, tenant FROM herald_workflow_digests ORDER BY 1")
    assert [(r[0], r[1]) for r in wf_digests] == [("wf.n3", "acme"), ("wf.n6", "")]
    throttle = await pool.fetch("SELECT user_id, tenant FROM herald_workflow_throttle ORDER BY 1")
    assert [(r[0], r[1]) for r in throttle] == [("u2", ""), ("u3", "acme")]
    # The same id may now have a digest per tenant in one window.
    await pool.execute(
        "INSERT INTO herald_digests (tenant, user_id, window_start, send_at, idempotency_key) "
        "VALUES ('acme', 'u2', $1, $1, 'k-u2-acme')",
        T0,
    )
