"""The group's leader leaves while the group is rebalancing: the member left must still read.

What the scaling storm's scale-down does (several members SIGTERMed at once, so LeaveGroups land
one after another): the first leave starts a rebalance, the leader's leave lands during it, and the
embedded broker keeps naming the gone leader (consumers/runtime/ghost_leader.py has the tansu
source references). Every follower's sync is then refused, forever; with the takeover, the
Herald member left joins as the gone leader, assigns, and reads.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from consumers.infra.settings import HeraldSettings
from consumers.runtime import metrics
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from tests.integration.test_runtime_orphans import _assigned, _poll, forwarding_member
from tests.integration.test_runtime_rebalance import _records, _until
from tests.kafka_helpers import produce_raw

pytestmark = pytest.mark.timeout(180)


async def _member(settings: HeraldSettings, topic: str, group: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.runtime.session_timeout_ms,
        heartbeat_interval_ms=settings.runtime.heartbeat_interval_ms,
    )
    await consumer.start()
    return consumer


def _synced(consumer: AIOKafkaConsumer) -> bool:
    subscription = consumer._subscription.subscription
    return subscription is not None and subscription.assignment is not None


async def test_the_member_left_reads_after_the_leader_left_mid_rebalance(settings: HeraldSettings) -> None:
    # The orphan watch's rejoin (its own remedy) does not get out of this; keep it out of the way.
    runtime = settings.runtime.model_copy(update={"orphan_rejoin_after_s": 0.0})
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.out"
    group = f"{settings.topic_prefix}-ghost"
    await create_topics(settings, [topics.events, target], partitions=2)
    producer = make_producer(settings)
    await producer.start()
    stops = {name: asyncio.Event() for name in ("leader", "other")}
    leader = await _member(settings, topics.events, group)  # first in: the group's leader
    polls = [asyncio.create_task(_poll(leader, stops["leader"]))]
    await _until(lambda: len(leader.assignment()) == 2, 30, "the leader alone owns both partitions")
    handler, member = forwarding_member(
        "ghost-b", topics.events, target, group=group, producer=producer, settings=settings, runtime=runtime
    )
    task = asyncio.create_task(member.run())
    other: AIOKafkaConsumer | None = None
    takeovers = metrics.GROUP_REJOINS.labels("ghost-b", "ghost_leader")
    before = takeovers._value.get()
    try:
        await _until(lambda: bool(member.consumer.assignment()), 30, "the Herald member gets a partition")
        other = await _member(settings, topics.events, group)
        polls.append(asyncio.create_task(_poll(other, stops["other"])))
        # Two partitions, three members: one holds nothing; wait for the third's sync, not a partition.
        await _until(lambda: _synced(other), 40, "the third member is in the group")
        await _until(lambda: _assigned([leader, member.consumer, other]) == 2, 30, "the group settles")
        # Scale down: the third member leaves (the group rebalances), then the leader leaves
        # before it has rejoined: the broker keeps naming it leader.
        for stop in stops.values():
            stop.set()
        await other.stop()
        await leader.stop()  # milliseconds later: the rebalance the first leave started is on
        await asyncio.gather(*polls, return_exceptions=True)
        await produce_raw(settings, topics.events, _records("g", 20))
        await _until(lambda: len(handler.handled) >= 20, 90, "the member left reads everything")
        assert len(member.consumer.assignment()) == 2
        assert takeovers._value.get() > before
    finally:
        for stop in stops.values():
            stop.set()
        member.stop()
        await asyncio.wait_for(asyncio.gather(task, *polls, return_exceptions=True), 30)
        for consumer in (leader, other):
            if consumer is not None:
                await consumer.stop()  # a second stop is a no-op
        await producer.stop()
