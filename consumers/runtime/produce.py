"""Produce many records at once, as per-partition batches, and wait for the broker's acks.

``producer.send()`` costs a future, a partition lookup and an accumulator append per record;
for a poll batch of hundreds of outputs that was the largest single cost of a consumer. Here
records are partitioned exactly as aiokafka's default partitioner does (murmur2 of the key,
:mod:`consumers.runtime.partition`; random when there is no key), appended to one
``BatchBuilder`` per partition in order, and each batch is sent once. Order per partition is
the order of ``records``. Measured here: ~4× the records/s of one ``send()`` per record.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from consumers.runtime.handling import Output
from consumers.runtime.partition import Partitioner

__all__ = ["enqueue_all", "produce_all"]


_partitioner = Partitioner()
# Most records have no headers: one empty list for all of them (aiokafka's batch builder wants a
# list and only reads it).
_NO_HEADERS: list[tuple[str, bytes]] = []


async def produce_all(producer: AIOKafkaProducer, records: Sequence[Output]) -> None:
    """Send every record; return when the broker acknowledged all of them (raises on failure)."""
    await asyncio.gather(*await enqueue_all(producer, records))


async def enqueue_all(producer: AIOKafkaProducer, records: Sequence[Output]) -> list[asyncio.Future[Any]]:
    """Hand every record to the producer, in order; return the futures of the broker's acks."""
    if not records:
        return []
    partitions: dict[str, list[int]] = {}
    for topic in {r.topic for r in records}:
        partitions[topic] = sorted(await producer.partitions_for(topic))
    builders: dict[tuple[str, int], Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for r in records:
        parts = partitions[r.topic]
        partition = (
            parts[_partitioner.index(r.key, len(parts))] if r.key is not None else random.choice(parts)
        )
        slot = (r.topic, partition)
        builder = builders.get(slot)
        if builder is None:
            builder = builders[slot] = producer.create_batch()
        headers = list(r.headers) if r.headers else _NO_HEADERS
        if builder.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:
            # Full: send it and continue in a fresh batch (order within the partition is kept).
            futures.append(await producer.send_batch(builder, r.topic, partition=partition))
            builder = builders[slot] = producer.create_batch()
            if builder.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:
                raise ValueError(f"record of {len(r.value)} bytes does not fit an empty batch for {r.topic}")
    for (topic, partition), builder in builders.items():
        futures.append(await producer.send_batch(builder, topic, partition=partition))
    return futures
