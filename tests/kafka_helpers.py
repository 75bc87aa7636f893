"""Reading and writing topics in tests (manual assignment: no group to wait for)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics

__all__ = ["committed_offsets", "produce_raw", "read_all", "wait_for_records"]


async def produce_raw(
    settings: HeraldSettings, topic: str, values: Sequence[tuple[bytes | None, bytes]]
) -> None:
    await create_topics(settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(settings: HeraldSettings, topic: str) -> list[Any]:
    """Every record currently in ``topic`` (ConsumerRecords), partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def wait_for_records(
    settings: HeraldSettings, topic: str, count: int, timeout: float = 30.0
) -> list[Any]:
    deadline = time.monotonic() + timeout
    records: list[Any] = []
    while time.monotonic() < deadline:
        records = await read_all(settings, topic)
        if len(records) >= count:
            return records
        await asyncio.sleep(0.2)
    raise AssertionError(f"{topic}: {len(records)} records after {timeout}s, expected {count}")


async def committed_offsets(settings: HeraldSettings, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        out = {}
        for p in parts:
            off = await consumer.committed(TopicPartition(topic, p))
            out[p] = off or 0
        return out
    finally:
        await consumer.stop()
