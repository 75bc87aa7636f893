"""Shared clients of one process (producer, PostgreSQL pool, Redis), created on first use."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import redis.asyncio as redis_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from consumers.infra.backoff import backoff
from consumers.infra.clock import Clock, SystemClock
from consumers.infra.db import DatabaseUnavailable, connect_pool, migrate
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import KafkaUnavailable, create_topics, make_producer
from consumers.runtime.topics import Topics

__all__ = ["Resources"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Resources:
    def __init__(self, settings: HeraldSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.clock: Clock = clock or SystemClock()
        self._producer: AIOKafkaProducer | None = None
        self._pool: asyncpg.Pool | None = None
        self._redis: redis_asyncio.Redis | None = None

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = await self._with_startup_retries("Kafka", self._start_producer)
        return self._producer

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = make_producer(self.settings)
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await producer.stop()
            raise KafkaUnavailable(
                f"Kafka is not reachable at {self.settings.kafka_bootstrap_servers} "
                f"(set KAFKA_BOOTSTRAP_SERVERS): {exc}"
            ) from exc
        return producer

    async def create_topics(self, topics: list[str]) -> list[str]:
        """Create the topics a process needs, waiting for Kafka as long as for PostgreSQL."""
        return await self._with_startup_retries("Kafka", lambda: create_topics(self.settings, topics))

    async def pool(self, *, apply_migrations: bool = True) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await self._with_startup_retries(
                "PostgreSQL", lambda: connect_pool(self.settings.database_url, max_size=20)
            )
            if apply_migrations:
                await migrate(self._pool)
        return self._pool

    async def _with_startup_retries(self, what: str, connect: Callable[[], Awaitable[T]]) -> T:
        """A dependency down while we start (a restart during an outage) is waited for, up to
        ``runtime.startup_wait_s``, instead of failing the process at once."""
        deadline = time.monotonic() + self.settings.runtime.startup_wait_s
        attempt = 0
        while True:
            try:
                return await connect()
            except (DatabaseUnavailable, KafkaUnavailable) as exc:
                attempt += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                # The last wait is cut to the deadline, not skipped: the process tries once more at
                # the end of startup_wait_s instead of giving up a backoff's length before it.
                delay = min(backoff(attempt, base=0.2, cap=5.0, jitter=0.2, rand=random.random()), left)
                log.warning("%s not reachable yet (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)

    def redis(self) -> redis_asyncio.Redis:
        if self._redis is None:
            # A bounded, blocking pool: many concurrent deliveries wait for a connection instead
            # of opening one each (which runs into file-descriptor and maxclients limits). Every call
            # is bounded (pool wait, connect, each round trip): a Redis that stalls with connections
            # left open costs seconds, never a parked batch (tests/integration/test_channel_redis_stall.py).
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                self.settings.redis_url.get_secret_value(),
                max_connections=32,
                timeout=2.0,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
            self._redis = redis_asyncio.Redis(connection_pool=pool)
        return self._redis

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()
        if self._redis is not None:
            await self._redis.aclose()
