"""A second member joins while the first is stuck on a wait that may never end: the first must let
its partitions go within a bound, rejoin, and keep consuming.

Before, the revocation callback (run inside aiokafka's group coordination) waited on the batch lock
and on the previous batch's commit without a bound: a commit that never returned (aiokafka retries a
commit for as long as the coordinator is unknown or moving), or a batch retrying a dependency outage
under the lock, kept the member out of the group's rebalance, and it stopped consuming for good.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from consumers.infra.settings import HeraldSettings
from consumers.runtime import metrics
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics
from tests.kafka_helpers import Forward, produce_raw, wait_for_records

pytestmark = pytest.mark.timeout(180)


class _CommitBlackHole(AIOKafkaConsumer):  # type: ignore[misc]
    """A real consumer whose offset commits never come back while ``closed`` is set: what aiokafka
    does when the coordinator stays unknown or keeps moving (it retries the commit forever)."""

    closed = asyncio.Event()

    async def commit(self, offsets: Any = None) -> None:
        while self.closed.is_set():
            await asyncio.sleep(0.05)
        await super().commit(offsets)


async def _until(predicate: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def _records(prefix: str, n: int) -> list[tuple[bytes | None, bytes]]:
    return [(f"{prefix}{i}".encode(), f"{prefix}{i}".encode()) for i in range(n)]


async def _two_members(
    settings: HeraldSettings, first: Forward, second: Forward, first_factory: Any, topic: str
) -> tuple[Runner[bytes], Runner[bytes], Any]:
    producer = make_producer(settings)
    await producer.start()

    def runner(handler: Forward, factory: Any) -> Runner[bytes]:
        return Runner(
            handler,
            topics=[topic],
            group_id=f"{settings.topic_prefix}-g",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            producer=producer,
            settings=settings.runtime,
            consumer_factory=factory,
        )

    return runner(first, first_factory), runner(second, AIOKafkaConsumer), producer


def _rebalance_settings(settings: HeraldSettings, **runtime: object) -> HeraldSettings:
    return settings.model_copy(update={"runtime": settings.runtime.model_copy(update=runtime)})


async def test_a_commit_that_never_returns_does_not_keep_the_member_out_of_the_rebalance(
    settings: HeraldSettings,
) -> None:
    settings = _rebalance_settings(settings, commit_timeout_s=1.0, revoke_settle_s=3.0)
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.out"
    await create_topics(settings, [topics.events, target], partitions=2)
    no_outage = asyncio.Event()
    first, second = Forward("rebalance-a", target, no_outage), Forward("rebalance-b", target, no_outage)
    a, b, producer = await _two_members(settings, first, second, _CommitBlackHole, topics.events)
    _CommitBlackHole.closed.set()
    abandoned = metrics.COMMITS_ABANDONED.labels("rebalance-a", "timeout")
    abandoned_before = abandoned._value.get()
    tasks = [asyncio.create_task(a.run())]
    try:
        await produce_raw(settings, topics.events, _records("before-", 10))
        await _until(lambda: len(first.handled) >= 10, 30, "the first member handles the first batch")
        await _until(lambda: str(a.describe()["in_flight"]).startswith("commit"), 10, "a commit hangs")
        tasks.append(asyncio.create_task(b.run()))  # the group rebalances around the hung commit
        both = await _until(
            lambda: bool(a.consumer.assignment()) and bool(b.consumer.assignment()),
            40,
            "both members own partitions after the join",
        )
        handled_before = len(first.handled)
        await produce_raw(settings, topics.events, _records("after-", 40))
        await _until(lambda: len(first.handled) > handled_before, 30, "the first member consumes again")
        out = await wait_for_records(settings, target, 50)
        assert {r.key for r in out} >= {k for k, _ in _records("before-", 10) + _records("after-", 40)}
        assert both < 30, both
        # The hung commit was given up and counted, so operators see the replays coming.
        assert abandoned._value.get() > abandoned_before
    finally:
        _CommitBlackHole.closed.clear()
        a.stop()
        b.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await producer.stop()


async def test_a_batch_retrying_an_outage_gives_way_to_the_rebalance(settings: HeraldSettings) -> None:
    # Retries for as long as the outage lasts: the batch lock stays taken between tries.
    settings = _rebalance_settings(
        settings, handler_max_retries=1000, poison_after_retries=1000, handler_retry_max_s=0.5
    )
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.out"
    await create_topics(settings, [topics.events, target], partitions=2)
    outage = asyncio.Event()
    first, second = Forward("outage-a", target, outage), Forward("outage-b", target, outage)
    a, b, producer = await _two_members(settings, first, second, AIOKafkaConsumer, topics.events)
    tasks = [asyncio.create_task(a.run())]
    try:
        await _until(lambda: len(a.consumer.assignment()) == 2, 30, "the first member owns both partitions")
        outage.set()
        await produce_raw(settings, topics.events, _records("k", 20))
        await _until(lambda: a.batch_age() > 1.0, 30, "the first member retries its batch")
        tasks.append(asyncio.create_task(b.run()))
        # The outage goes on; the group still settles with both members.
        await _until(
            lambda: bool(a.consumer.assignment()) and bool(b.consumer.assignment()),
            40,
            "both members own partitions during the outage",
        )
        outage.clear()
        out = await wait_for_records(settings, target, 20)
        assert {r.key for r in out} == {k for k, _ in _records("k", 20)}  # nothing lost
        assert first.handled and second.handled
    finally:
        outage.clear()
        a.stop()
        b.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await producer.stop()
