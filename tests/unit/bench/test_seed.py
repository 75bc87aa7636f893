"""Every measured run starts from the same state, whatever the run before it left behind."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis_asyncio

from bench.seed import fresh_state
from consumers.devstack import DevStack
from consumers.infra.db import connect_pool

_SNAPSHOT = """
SELECT (SELECT count(*) FROM herald_recipients) AS recipients,
       (SELECT count(*) FROM herald_device_tokens) AS tokens,
       (SELECT count(*) FROM herald_preferences) AS preferences,
       (SELECT count(*) FROM herald_timers) AS timers,
       (SELECT count(*) FROM herald_migrations) AS migrations
"""


async def _state(stack: DevStack) -> tuple[dict[str, int], int]:
    pool = await connect_pool(stack.database_url)
    client = redis_asyncio.Redis.from_url(stack.redis_url)
    try:
        row = await pool.fetchrow(_SNAPSHOT)
        assert row is not None
        return dict(row), int(await client.dbsize())
    finally:
        await client.aclose()
        await pool.close()


async def _a_run_leaves_state_behind(stack: DevStack) -> None:
    """What a classifier run leaves: a spent rate-limit bucket, an armed deferred send, a new user."""
    pool = await connect_pool(stack.database_url)
    client = redis_asyncio.Redis.from_url(stack.redis_url)
    try:
        await pool.execute("INSERT INTO herald_recipients (user_id, email) VALUES ('late', 'l@example.com')")
        await pool.execute(
            "INSERT INTO herald_timers (key, kind, due_at) "
            "VALUES ('k1', 'publish', now() + interval '1 hour')"
        )
        await client.sadd("herald:rl:u1:email:1", "key-1", "key-2", "key-3")
    finally:
        await client.aclose()
        await pool.close()


def test_fresh_state_is_the_same_after_any_run() -> None:
    async def scenario(stack: DevStack) -> None:
        await fresh_state(stack.database_url, stack.redis_url, 500)
        first = await _state(stack)
        await _a_run_leaves_state_behind(stack)
        assert await _state(stack) != first
        await fresh_state(stack.database_url, stack.redis_url, 500)
        assert await _state(stack) == first
        tables, redis_keys = first
        assert tables["recipients"] == 500 and tables["timers"] == 0 and tables["migrations"] > 0
        assert redis_keys == 0

    with DevStack(with_moto=False) as stack:  # its own: emptying every table is not for a shared one
        asyncio.run(scenario(stack))
