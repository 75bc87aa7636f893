"""The latency proxy against real Redis and PostgreSQL: it adds what it says, stalls without
closing, and heals without the client reconnecting."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from consumers.devstack import DevStack
from tests.fakes.latency_proxy import LatencyProxy

pytestmark = pytest.mark.timeout(120)


def _target(url: str) -> tuple[str, int]:
    host_port = url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


async def _timed(coro: object) -> float:
    t0 = time.monotonic()
    await coro  # type: ignore[misc]
    return time.monotonic() - t0


async def test_redis_round_trips_slow_then_stall_then_heal(stack: DevStack) -> None:
    with LatencyProxy(_target(stack.redis_url)) as proxy:
        client = redis_asyncio.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=1.0)
        try:
            fast = await _timed(client.ping())
            proxy.set(delay_s=0.4)
            slow = [await _timed(client.ping()) for _ in range(3)]
            assert all(0.39 <= s < 0.9 for s in slow), slow
            assert fast < 0.3  # a first connection on a loaded machine, still well under the delay
            proxy.set(stall=True)
            with pytest.raises(redis_asyncio.TimeoutError):
                await client.ping()
            assert proxy.open >= 1  # a stall closes nothing
            proxy.set()
            # The client heals by itself (redis-py reconnects after a timeout); nothing to restart.
            assert await client.ping()
            assert await _timed(client.ping()) < 0.3
        finally:
            await client.aclose()


async def test_postgres_queries_pay_the_delay_per_round_trip(stack: DevStack) -> None:
    host, port = _target(stack.database_url)
    with LatencyProxy((host, port)) as proxy:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres")
        try:
            assert await conn.fetchval("SELECT 1") == 1
            proxy.set(delay_s=0.5)
            took = await _timed(conn.fetchval("SELECT 2"))
            assert 0.45 <= took < 1.5, took
            proxy.set(stall=True)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.fetchval("SELECT 3"), 1.0)
            proxy.set()
        finally:
            conn.terminate()
        # Bytes held during the stall were delivered in order, the server is fine: a new
        # connection answers at full speed.
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres")
        try:
            assert await _timed(conn.fetchval("SELECT 4")) < 0.2
        finally:
            await conn.close()


async def test_stopping_with_connections_open_leaves_nothing_to_collect(stack: DevStack) -> None:
    # A connection task left pending at stop is collected later, in whatever test runs then, and
    # closes its sockets on the proxy's closed loop: an unraisable error that test fails on.
    caught: list[BaseException | None] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: caught.append(u.exc_value)
    try:
        proxy = LatencyProxy(_target(stack.redis_url)).start()
        client = redis_asyncio.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=1.0)
        await client.ping()
        proxy.set(stall=True)
        with pytest.raises(redis_asyncio.RedisError):  # a timeout: the stall holds the answer
            await client.ping()
        proxy.stop()
        with contextlib.suppress(redis_asyncio.RedisError, OSError):
            await client.aclose()
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert caught == []
