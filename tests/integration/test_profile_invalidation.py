"""The classifier's profile cache sees a recipient or preference change within one NOTIFY, not a
TTL: the cache here lives an hour, and every change must show in well under a second."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import asyncpg

from consumers.classifier.invalidation import ProfileInvalidator
from consumers.classifier.lookup import ProfileCache
from consumers.devstack import DevStack
from schemas.models import Channel


async def _staleness(
    cache: ProfileCache, uid: str, check: object, change: str, *args: object, tenant: str = ""
) -> float:
    pool = cache.pool
    t0 = time.perf_counter()
    await pool.execute(change, uid, *args)
    committed = time.perf_counter()
    while True:
        profile = (await cache.get_many([(tenant, uid)]))[(tenant, uid)]
        if check(profile):  # type: ignore[operator]
            return time.perf_counter() - committed
        assert time.perf_counter() - t0 < 5, "the cache never saw the change"
        await asyncio.sleep(0.001)


async def test_changes_reach_the_cache_within_a_notify(stack: DevStack, pg_pool: asyncpg.Pool) -> None:
    cache = ProfileCache(pg_pool, ttl_s=3600, max_size=1000)
    invalidator = ProfileInvalidator(stack.database_url, cache)
    stopping = asyncio.Event()
    task = asyncio.create_task(invalidator.run(stopping))
    try:
        await asyncio.wait_for(invalidator.listening.wait(), 10)
        uid = f"inv-{uuid.uuid4().hex[:10]}"
        await pg_pool.execute(
            "INSERT INTO herald_recipients (user_id, email) VALUES ($1, 'a0@example.com')", uid
        )
        samples = []
        for i in range(1, 31):
            assert (await cache.get_many([("", uid)]))[("", uid)].email is not None  # cached now
            samples.append(
                await _staleness(
                    cache,
                    uid,
                    lambda p, i=i: p.email == f"a{i}@example.com",
                    "UPDATE herald_recipients SET email = $2 WHERE user_id = $1",
                    f"a{i}@example.com",
                )
            )
        samples.append(
            await _staleness(
                cache,
                uid,
                lambda p: p.preference("marketing", Channel.EMAIL) is False,
                "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ($1, 'marketing', 'email', false)",
            )
        )
        samples.sort()
        print(
            f"staleness over {len(samples)} changes: p50 {statistics.median(samples) * 1000:.1f} ms, "
            f"max {samples[-1] * 1000:.1f} ms"
        )
        # The TTL is an hour: seconds at worst (a loaded shared machine) still proves the NOTIFY path.
        assert statistics.median(samples) < 0.2 and samples[-1] < 5.0
        assert invalidator.received >= len(samples)
    finally:
        stopping.set()
        await task


async def test_a_fetch_overlapping_an_invalidation_is_not_cached(pg_pool: asyncpg.Pool) -> None:
    cache = ProfileCache(pg_pool, ttl_s=3600, max_size=1000)
    uid = f"race-{uuid.uuid4().hex[:10]}"
    fetch = asyncio.create_task(cache.get_many([("", uid)]))
    await asyncio.sleep(0)  # the fetch is in flight
    cache.invalidate(("", uid))
    await fetch
    queries = cache.queries
    await cache.get_many([("", uid)])
    assert cache.queries == queries + 1  # read again, not served from a possibly stale entry


async def test_a_change_in_one_tenant_reaches_that_tenants_profile_only(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # The same user id in two tenants: two profiles, cached apart; a write names its tenant.
    cache = ProfileCache(pg_pool, ttl_s=3600, max_size=1000)
    invalidator = ProfileInvalidator(stack.database_url, cache)
    stopping = asyncio.Event()
    task = asyncio.create_task(invalidator.run(stopping))
    try:
        await asyncio.wait_for(invalidator.listening.wait(), 10)
        uid = f"ten-{uuid.uuid4().hex[:10]}"
        await pg_pool.execute(
            "INSERT INTO herald_recipients (tenant, user_id, email) VALUES ('acme', $1, 'a@acme.example'), "
            "('globex', $1, 'a@globex.example')",
            uid,
        )
        # the two rows' notifications arrive on their own time: let them land before caching, or
        # a late one drops the entry this test then expects to be served from the cache
        for _ in range(100):
            if invalidator.received >= 2:
                break
            await asyncio.sleep(0.05)
        got = await cache.get_many([("acme", uid), ("globex", uid), ("", uid)])
        assert (
            got[("acme", uid)].email == "a@acme.example" and got[("globex", uid)].email == "a@globex.example"
        )
        assert not got[("", uid)].known  # not a recipient of the default tenant
        await _staleness(
            cache,
            uid,
            lambda p: p.email == "b@acme.example",
            "UPDATE herald_recipients SET email = $2 WHERE tenant = 'acme' AND user_id = $1",
            "b@acme.example",
            tenant="acme",
        )
        queries = cache.queries
        assert (await cache.get_many([("globex", uid)]))[("globex", uid)].email == "a@globex.example"
        assert cache.queries == queries  # the other tenant's profile stayed cached
    finally:
        stopping.set()
        await task
