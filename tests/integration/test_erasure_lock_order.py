"""Erasure and a fallback batch lock a user's critical watch rows in one order (notification_id),
so they cannot deadlock (PostgreSQL would abort one). Real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from consumers.api.admin.recipients_pg import RecipientStore
from consumers.devstack import DevStack
from consumers.fallback.locking import lock_watches
from tests.pg_helpers import waits_for_a_lock
from tests.waiting import until

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def _pool(stack: DevStack, name: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        stack.database_url, min_size=1, max_size=2, server_settings={"application_name": name}
    )
    assert pool is not None
    return pool


async def test_an_erasure_and_a_fallback_batch_on_the_same_watches_do_not_deadlock(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    key = uuid.uuid4().hex[:8]
    user, nids = f"bob-{key}", [f"erase-{key}-n{i}" for i in range(3)]
    # Stored n2 first: erasure's (user_id, tenant) index meets n2 before n0 and n1; the batch's order
    # is n0, n1, n2.
    for nid in [nids[2], nids[0], nids[1]]:
        await pg_pool.execute(
            "INSERT INTO herald_critical_watch (notification_id, user_id, tenant, event_type, deadline) "
            "VALUES ($1, $2, 'acme', 'security_alert', $3)",
            nid,
            user,
            NOW,
        )
    holder, batch_pool, erase_pool = (
        await _pool(stack, f"erase-holder-{key}"),
        await _pool(stack, f"erase-batch-{key}"),
        await _pool(stack, f"erase-erasure-{key}"),
    )
    try:
        async with holder.acquire() as h, h.transaction():
            # A receipt's insert holds n1: the batch takes n0 and waits for n1.
            await h.execute(
                "SELECT 1 FROM herald_critical_watch WHERE notification_id = $1 FOR UPDATE", nids[1]
            )

            async def batch() -> None:
                async with batch_pool.acquire() as conn, conn.transaction():
                    await lock_watches(conn, nids)

            batching = asyncio.ensure_future(batch())
            await until(
                lambda: waits_for_a_lock(pg_pool, f"erase-batch-{key}"),
                what="the batch waits for n1",
                timeout=10,
            )
            # The erasure starts while the batch holds n0: in index order it would delete n2, then
            # wait for n0; once n1 is free the batch would wait for n2: a cycle.
            erasing = asyncio.ensure_future(RecipientStore(erase_pool).erase("acme", user))
            await until(
                lambda: waits_for_a_lock(pg_pool, f"erase-erasure-{key}"),
                what="the erasure waits",
                timeout=10,
            )
        _, removed = await asyncio.wait_for(asyncio.gather(batching, erasing), timeout=30)
        assert removed["critical_watch"] == 3
    finally:
        for pool in (holder, batch_pool, erase_pool):
            await pool.close()
        await pg_pool.execute(
            "DELETE FROM herald_critical_watch WHERE notification_id = ANY($1::text[])", nids
        )
