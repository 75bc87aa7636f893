"""Shared clients of one process (producer, PostgreSQL pool, Redis), created on first use."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from consumers.clock import Clock, SystemClock
from consumers.db import connect_pool, migrate
from consumers.kafka import KafkaUnavailable, make_producer
from consumers.settings import HeraldSettings
from consumers.topics import Topics

__all__ = ["Resources"]


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
            producer = make_producer(self.settings)
            try:
                await producer.start()
            except KafkaConnectionError as exc:
                await producer.stop()
                raise KafkaUnavailable(
                    f"Kafka is not reachable at {self.settings.kafka_bootstrap_servers}: {exc}"
                ) from exc
            self._producer = producer
        return self._producer

    async def pool(self, *, apply_migrations: bool = True) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await connect_pool(self.settings.database_url, max_size=20)
            if apply_migrations:
                await migrate(self._pool)
        return self._pool

    def redis(self) -> redis_asyncio.Redis:
        if self._redis is None:
            # A bounded, blocking pool: many concurrent deliveries wait for a connection instead
            # of opening one each (which runs into file-descriptor and maxclients limits).
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                self.settings.redis_url,
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
