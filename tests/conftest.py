"""Fixtures: one real dev stack (Kafka, PostgreSQL, Redis, moto) per test session.

Tests isolate by fresh topic prefixes and fresh user ids, never by mocking a server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from consumers.devstack import DevStack
from consumers.infra.db import migrate
from consumers.infra.settings import HeraldSettings, RuntimeSettings

# Hypothesis times each example against a 200 ms deadline and fails a test whose data generation
# is slow: both are wall-clock checks that a loaded machine (CI beside a benchmark) trips with
# no bug behind them. Properties here assert behaviour; speed lives in `make bench`.
hypothesis_settings.register_profile("herald", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("herald")


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    with DevStack() as s:
        saved = {k: os.environ.get(k) for k in s.env()}
        os.environ.update(s.env())
        try:
            yield s
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def make_settings(stack: DevStack, **overrides: object) -> HeraldSettings:
    """Settings pointing at the test stack, with a fresh topic prefix and test-friendly timeouts."""
    runtime = RuntimeSettings(
        session_timeout_ms=6000, heartbeat_interval_ms=500, poll_timeout_ms=100, shutdown_grace_s=10
    )
    base: dict[str, object] = {
        "kafka_bootstrap_servers": stack.kafka,
        "database_url": stack.database_url,
        "redis_url": stack.redis_url,
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
        "partitions": 2,
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "runtime": runtime,
    }
    base.update(overrides)
    return HeraldSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings(stack: DevStack) -> HeraldSettings:
    return make_settings(stack)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def pg_pool(stack: DevStack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=10)
    assert pool is not None
    await migrate(pool)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(stack: DevStack) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()
