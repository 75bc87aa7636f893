"""A group that settles with partitions nobody owns: the member left without any rejoins.

The leader's assignor leaves every partition out once (what a buggy assignor does, and what the
embedded broker's build lets through when an assignment does not cover every member). Kafka
rebalances only when membership changes, so without the orphan check nothing would ever read
those partitions again; with it, the Herald member that holds nothing sees records waiting
under a commit that does not move, rejoins, and the backlog is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from consumers.infra.settings import HeraldSettings, RuntimeSettings
from consumers.runtime import metrics
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics
from tests.integration.test_runtime_rebalance import _records, _until
from tests.kafka_helpers import Forward, produce_raw

pytestmark = pytest.mark.timeout(180)


class _LeavesEveryoneOutOnce(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """Round robin (same protocol name, so the group uses it), except the first assignment made
    for two members or more: nobody gets anything."""

    left_out = False

    @classmethod
    def assign(
        cls, cluster: Any, member_metadata: Mapping[str, Any]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        if len(member_metadata) >= 2 and not cls.left_out:
            cls.left_out = True
            return {m: ConsumerProtocolMemberAssignment(cls.version, [], b"") for m in member_metadata}
        result: dict[str, ConsumerProtocolMemberAssignment] = super().assign(cluster, member_metadata)
        return result


async def _poll(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    while not stop.is_set():  # the leader keeps polling (and heartbeating); it reads nothing here
        await consumer.getmany(timeout_ms=200)


def _assigned(consumers: Iterable[AIOKafkaConsumer]) -> int:
    return sum(len(c.assignment()) for c in consumers)


def _synced(consumers: Iterable[AIOKafkaConsumer]) -> bool:
    """Every consumer holds the assignment of the group's latest round (its rebalance is over)."""
    return not any(c._subscription.reassignment_in_progress for c in consumers)


def forwarding_member(
    name: str,
    source: str,
    target: str,
    *,
    group: str,
    producer: AIOKafkaProducer,
    settings: HeraldSettings,
    runtime: RuntimeSettings,
) -> tuple[Forward, Runner[bytes]]:
    """A Herald member of ``group`` that forwards ``source`` to ``target``: the one under test."""
    handler = Forward(name, target, asyncio.Event())
    member = Runner(
        handler,
        topics=[source],
        group_id=group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=runtime,
    )
    return handler, member


async def test_a_member_left_without_partitions_while_they_go_unread_rejoins(
    settings: HeraldSettings,
) -> None:
    runtime = settings.runtime.model_copy(update={"orphan_rejoin_after_s": 6.0})
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.out"
    group = f"{settings.topic_prefix}-orphans"
    await create_topics(settings, [topics.events, target], partitions=2)
    leader = AIOKafkaConsumer(
        topics.events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=runtime.session_timeout_ms,
        heartbeat_interval_ms=runtime.heartbeat_interval_ms,
        partition_assignment_strategy=(_LeavesEveryoneOutOnce,),
    )
    producer = make_producer(settings)
    await producer.start()
    await leader.start()
    stop = asyncio.Event()
    polling = asyncio.create_task(_poll(leader, stop))
    await _until(lambda: len(leader.assignment()) == 2, 30, "the leader alone owns both partitions")
    handler, member = forwarding_member(
        "orphan-b", topics.events, target, group=group, producer=producer, settings=settings, runtime=runtime
    )
    rejoins = metrics.GROUP_REJOINS.labels("orphan-b", "unread_partitions")
    before = rejoins._value.get()
    task = asyncio.create_task(member.run())
    try:
        # The join makes the leader assign: it leaves both members without partitions.
        await _until(lambda: _LeavesEveryoneOutOnce.left_out, 30, "the leader's bad assignment")
        # The leader keeps its old partitions until its sync returns the new assignment: wait for
        # both members to hold what this round gave them, however long a loaded broker takes.
        await _until(lambda: _synced([leader, member.consumer]), 30, "both members synced")
        assert _assigned([leader, member.consumer]) == 0  # settled with nobody reading
        await produce_raw(settings, topics.events, _records("o", 20))
        # The Herald member sees records waiting under a still commit, rejoins, and the group
        # rebalances (round robin this time): the member reads what it is given.
        await _until(lambda: bool(handler.handled), 60, "the member reads after rejoining")
        assert rejoins._value.get() > before
        assert _assigned([leader, member.consumer]) == 2
    finally:
        _LeavesEveryoneOutOnce.left_out = False
        stop.set()
        member.stop()
        await asyncio.wait_for(asyncio.gather(task, polling, return_exceptions=True), 30)
        await leader.stop()
        await producer.stop()
