"""A topic's subscriber count is kept on its row by triggers (migration 275): exact after every
kind of write (the admin API's batches, erasure's plain DELETE, COPY, a deleted topic, TRUNCATE),
under concurrent subscribes to one topic, and read without counting."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from consumers.api.admin.topics_pg import TopicStore


async def _counts(pool: asyncpg.Pool, tenant: str, key: str) -> tuple[int, int]:
    """(the kept count, count(*)) for one topic."""
    kept = await pool.fetchval(
        "SELECT subscriber_count FROM herald_topics WHERE tenant = $1 AND key = $2", tenant, key
    )
    real = await pool.fetchval(
        "SELECT count(*) FROM herald_topic_subscribers WHERE tenant = $1 AND topic = $2", tenant, key
    )
    return kept, real


async def test_the_count_follows_every_writer(pg_pool: asyncpg.Pool) -> None:
    store = TopicStore(pg_pool)
    tenant = f"cnt-{uuid.uuid4().hex[:8]}"
    assert await store.put(tenant, "news", None)
    assert await store.put(tenant, "other", None)
    assert await store.add(tenant, "news", ["a", "b", "b", "c"]) == 3  # a repeated id counts once
    assert await store.add(tenant, "news", ["c", "d"]) == 1  # an existing subscriber is left alone
    assert await store.add(tenant, "other", ["a"]) == 1
    assert (await store.get(tenant, "news")).subscribers == 4  # type: ignore[union-attr]
    assert await store.remove(tenant, "news", ["d", "nobody"]) == 1
    # Erasure's statement: one user out of every topic of the tenant.
    await pg_pool.execute("DELETE FROM herald_topic_subscribers WHERE user_id = 'a' AND tenant = $1", tenant)
    # COPY (the benchmark's seeding) fires the statement triggers as well.
    await pg_pool.copy_records_to_table(
        "herald_topic_subscribers",
        records=[(tenant, "news", f"u{i:04d}") for i in range(500)],
        columns=["tenant", "topic", "user_id"],
    )
    assert await _counts(pg_pool, tenant, "news") == (502, 502)
    assert await _counts(pg_pool, tenant, "other") == (0, 0)
    assert (await store.get(tenant, "news")).subscribers == 502  # type: ignore[union-attr]
    # A deleted topic's cascade, then the same key created again, starts from zero.
    assert await store.delete(tenant, "news")
    assert await store.put(tenant, "news", None)
    assert (await store.get(tenant, "news")).subscribers == 0  # type: ignore[union-attr]
    assert await store.add(tenant, "gone", ["a"]) is None


async def test_concurrent_subscribes_to_one_topic_neither_deadlock_nor_lose_counts(
    pg_pool: asyncpg.Pool,
) -> None:
    store = TopicStore(pg_pool)
    tenant = f"cnt-{uuid.uuid4().hex[:8]}"
    await store.put(tenant, "hot", None)
    await store.put(tenant, "warm", None)
    # Overlapping batches, in opposite orders, beside erasures that touch both topics.
    batches = [[f"u{(i * 37 + j) % 300:03d}" for j in range(100)] for i in range(8)]
    batches += [list(reversed(b)) for b in batches]
    erase = "DELETE FROM herald_topic_subscribers WHERE user_id = $1 AND tenant = $2"
    await asyncio.gather(
        *(store.add(tenant, "hot" if i % 3 else "warm", b) for i, b in enumerate(batches)),
        *(pg_pool.execute(erase, f"u{i:03d}", tenant) for i in range(0, 300, 7)),
    )
    for key in ("hot", "warm"):
        kept, real = await _counts(pg_pool, tenant, key)
        assert kept == real > 0


async def test_truncate_zeroes_every_count(pg_pool: asyncpg.Pool) -> None:
    store = TopicStore(pg_pool)
    tenant = f"cnt-{uuid.uuid4().hex[:8]}"
    await store.put(tenant, "news", None)
    await store.add(tenant, "news", ["a", "b"])
    async with pg_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:  # rolled back: other tests' subscriptions stay
            await conn.execute("TRUNCATE herald_topic_subscribers")
            assert (
                await conn.fetchval(
                    "SELECT subscriber_count FROM herald_topics WHERE tenant = $1 AND key = 'news'", tenant
                )
                == 0
            )
        finally:
            await tx.rollback()
    assert await _counts(pg_pool, tenant, "news") == (2, 2)
