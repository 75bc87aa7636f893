"""Baselines: raw aiokafka consume→produce vs Herald's runtime, no-op handler, same broker and data."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import Timing
from bench.timed import time_runner, timed_consumer_factory
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.passthrough import PassThrough
from consumers.runtime.topics import dlq

__all__ = ["NoOp", "raw_passthrough", "runtime_passthrough"]


class NoOp(PassThrough):
    """The runtime with a handler that does nothing: no decode, forward the bytes."""

    name = "noop"

    def decode(self, raw: bytes) -> tuple[Any, bytes]:
        return None, raw


async def raw_passthrough(
    settings: HeraldSettings, source: str, target: str, total: int, group: str, *, timeout: float
) -> Timing:
    """The simplest correct at-least-once loop with plain aiokafka: poll, send all, await acks, commit
    (for at most ``timeout`` seconds)."""
    await create_topics(settings, [target])
    consumer_cls = timed_consumer_factory(total)
    consumer = consumer_cls(
        source,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=settings.runtime.linger_ms,
        max_batch_size=256 * 1024,
    )
    await consumer.start()
    await producer.start()
    deadline = time.monotonic() + timeout
    try:
        while not consumer_cls.done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw pass-through over {total:,} records not done in {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.runtime.max_batch)
            futures = []
            offsets = {}
            for tp, records in batch.items():
                for r in records:
                    futures.append(await producer.send(target, r.value, key=r.key))
                offsets[tp] = records[-1].offset + 1
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit(offsets)
        end = time.perf_counter()
    finally:
        await consumer.stop()
        await producer.stop()
    assert consumer_cls.first_at is not None
    return Timing(end - consumer_cls.first_at, total, consumer_cls.end_cpu - consumer_cls.first_cpu)


async def runtime_passthrough(
    settings: HeraldSettings,
    source: str,
    target: str,
    total: int,
    group: str,
    *,
    timeout: float,
    decode: bool = True,
) -> Timing:
    await create_topics(settings, [target, dlq(source)])
    producer = make_producer(settings)
    await producer.start()
    try:
        return await time_runner(
            PassThrough(target) if decode else NoOp(target),
            topic=source,
            group=group,
            total=total,
            producer=producer,
            settings=settings,
            timeout=timeout,
        )
    finally:
        await producer.stop()
