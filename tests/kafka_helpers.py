"""Reading and writing topics in tests (manual assignment: no group to wait for), and waiting on
their state instead of sleeping: to prove that something did *not* happen, wait until the consumer
has committed everything it was given (:func:`wait_until_consumed`; it commits only after its
outputs are acknowledged) and the topics it writes have stopped growing (:func:`wait_until_quiet`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import Incoming, Output, Result
from consumers.runtime.kafka import create_topics
from schemas.errors import DependencyUnavailable
from tests.waiting import until

__all__ = [
    "Forward",
    "committed_offsets",
    "end_offsets",
    "produce_raw",
    "read_all",
    "wait_for_records",
    "wait_until_consumed",
    "wait_until_quiet",
]


class Forward:
    """A runtime handler forwarding each record to ``target``; raises ``DependencyUnavailable``
    while ``outage`` is set (its cache is down)."""

    def __init__(self, name: str, target: str, outage: asyncio.Event | None = None) -> None:
        self.name = name
        self.target = target
        self.outage = outage
        self.handled: list[bytes] = []

    def decode(self, raw: bytes) -> bytes:
        return raw

    async def handle(self, batch: Sequence[Incoming[bytes]]) -> Sequence[Result]:
        if self.outage is not None and self.outage.is_set():
            raise DependencyUnavailable("cache unavailable (test)")
        self.handled.extend(item.value for item in batch)
        return [[Output(self.target, item.value, item.key)] for item in batch]


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


async def end_offsets(settings: HeraldSettings, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics`` (missing topics have none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def wait_until_consumed(
    settings: HeraldSettings, group: str, topics: Sequence[str], *, timeout: float = 30.0
) -> None:
    """Wait until ``group`` has committed every partition of ``topics`` up to its end offset.

    A Herald consumer commits only after what it produced for those records is acknowledged, so
    from then on all of its outputs for them are in their topics.
    """

    async def caught_up() -> bool:
        ends = await end_offsets(settings, topics)
        committed: dict[tuple[str, int], int] = {}
        for t in topics:
            committed.update(
                {(t, p): off for p, off in (await committed_offsets(settings, group, t)).items()}
            )
        return all(committed.get(tp, 0) >= end for tp, end in ends.items())

    await until(caught_up, what=f"group {group} consumed {list(topics)}", timeout=timeout, interval=0.1)


async def wait_until_quiet(
    settings: HeraldSettings,
    topics: Sequence[str],
    *,
    polls: int = 5,
    interval: float = 0.1,
    timeout: float = 30.0,
) -> dict[tuple[str, int], int]:
    """Wait until the end offsets of ``topics`` have not moved for ``polls`` polls in a row; returns them."""
    last = await end_offsets(settings, topics)
    unchanged = 0

    async def quiet() -> bool:
        nonlocal last, unchanged
        now = await end_offsets(settings, topics)
        unchanged = unchanged + 1 if now == last else 0
        last = now
        return unchanged >= polls

    await until(quiet, what=f"{list(topics)} stopped growing", timeout=timeout, interval=interval)
    return last
