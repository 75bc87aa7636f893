"""Retention on the S3-backed broker (real tansu on moto): old batches the group has read are
deleted, the newest and the unread stay, and the broker goes on serving: a fresh reader starts at
what is left, a group resumes at its committed offset, end offsets stay right, and a restart
changes none of it.

In `make chaos` only, with the broker restarts: under `make test`'s load the S3-backed broker's
first group join took over a minute once on a clean clone (the durable mode serves the chaos and
soak runs, which are not in `make test` either)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.devstack import DevStack
from consumers.devstack.kafka_retention import KafkaRetention, partition_path
from tests.chaos.driver import knobs
from tests.waiting import until

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(300),
    pytest.mark.skipif(knobs().events < 10_000, reason="make chaos only (HERALD_CHAOS_EVENTS >= 10000)"),
]

TOPIC = "retained"
TP = TopicPartition(TOPIC, 0)


@pytest.fixture
def s3_stack() -> Iterator[DevStack]:
    with DevStack(kafka_storage="s3", kafka_retention_s=2.0, with_moto=False, honour_env=False) as stack:
        yield stack


async def _send(stack: DevStack, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all")
    await producer.start()
    try:
        for v in values:  # one batch (one stored object) each
            await producer.send_and_wait(TOPIC, v, partition=0)
    finally:
        await producer.stop()


async def _read(stack: DevStack, want: int, group: str | None = None) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=stack.kafka,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[int, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < want:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    got += [(r.offset, r.value or b"") for r in records]
        if group is not None:
            await consumer.commit()
        return got
    finally:
        await consumer.stop()


async def _end(stack: DevStack) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([TP]))[TP])
    finally:
        await consumer.stop()


async def _two_sweeps(retention: KafkaRetention) -> None:
    """Wait until two more sweeps have completed: the second began after this call, so it saw
    everything sent and every hold set before it."""
    after = retention.sweeps + 2

    async def swept() -> bool:
        return retention.sweeps >= after

    await until(
        swept, what=f"two retention sweeps after {after - 2} (failed so far: {retention.errors})", timeout=60
    )


async def _deleted(retention: KafkaRetention, n: int) -> None:
    async def done() -> bool:
        return retention.deleted >= n

    await until(
        done, what=f"retention deleted {n} (had {retention.deleted}, failed sweeps {retention.errors})"
    )


async def test_old_batches_are_deleted_and_the_broker_goes_on(s3_stack: DevStack) -> None:
    stack = s3_stack
    retention = stack.retention
    assert retention is not None
    await _send(stack, [b"a0", b"a1", b"a2", b"a3"])
    assert await _read(stack, 4, group="g") == [(0, b"a0"), (1, b"a1"), (2, b"a2"), (3, b"a3")]
    # Not a wait for something to happen: the batches' age (by the store's one-second clock) is
    # the premise. a0..a3 are past the retention, and b4 lands in a later second than a3.
    await asyncio.sleep(2.5)
    await _send(stack, [b"b4"])
    await _deleted(retention, 4)  # a0..a3 (b4 is the newest: kept, whatever its age)

    # A fresh reader starts at what is left; the group resumes where it committed; the end is right.
    assert await _read(stack, 1) == [(4, b"b4")]
    assert await _read(stack, 1, group="g") == [(4, b"b4")]
    assert await _end(stack) == 5

    # A restart keeps what retention left, and the log goes on from the same offset.
    stack.restart_service("kafka", signal.SIGKILL)
    await _send(stack, [b"c5"])
    assert await _read(stack, 1, group="g") == [(5, b"c5")]
    assert await _end(stack) == 6

    # Batches the group has not read stay, however old: a consumer held up keeps its records.
    await _send(stack, [b"d6", b"d7"])
    await asyncio.sleep(2.5)  # the age again: d6, d7 (and c5) past the retention, e8 a later second
    await _send(stack, [b"e8"])
    await _two_sweeps(retention)  # sweeps that take c5 (read, old) and could take d6, d7
    assert await _read(stack, 3) == [(6, b"d6"), (7, b"d7"), (8, b"e8")]  # a fresh reader: c5 is gone
    assert await _read(stack, 3, group="g") == [(6, b"d6"), (7, b"d7"), (8, b"e8")]

    # A reader without a group holds what it has not read: d6 stays (read by g, old) while held at 6.
    retention.hold("reader", {partition_path(TOPIC, 0): 6})
    await _send(stack, [b"f9"])
    await _two_sweeps(retention)
    assert (await _read(stack, 1))[0] == (6, b"d6")
    gone = retention.deleted
    retention.release("reader")
    await _deleted(retention, gone + 3)  # released: d6..e8 go
    assert (await _read(stack, 1))[0] == (9, b"f9")
