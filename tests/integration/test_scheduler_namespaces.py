"""Timers belong to the deployment that armed them: two topic prefixes sharing one database never
release, cancel or see each other's timers, even with the same timer keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from consumers.devstack import DevStack
from consumers.infra.settings import SchedulerSettings
from consumers.runtime.kafka import create_topics, make_producer
from consumers.scheduler.store import Scheduler, TimerPoller, publish_timer
from tests.conftest import make_settings
from tests.kafka_helpers import read_all


async def test_a_poller_releases_only_its_own_namespace(stack: DevStack, pg_pool: asyncpg.Pool) -> None:
    ours, theirs = make_settings(stack), make_settings(stack)
    topic = f"{ours.topic_prefix}.timers"
    await create_topics(ours, [topic])
    due = datetime.now(UTC) - timedelta(seconds=1)
    a = Scheduler(pg_pool, namespace=ours.topic_prefix)
    b = Scheduler(pg_pool, namespace=theirs.topic_prefix)
    # The same key in both namespaces is two timers, each armed once.
    assert await a.arm([publish_timer("same-key", due, topic, b"k", b"ours")]) == 1
    assert await b.arm([publish_timer("same-key", due, topic, b"k", b"theirs")]) == 1
    assert await a.arm([publish_timer("same-key", due, topic, b"k", b"again")]) == 0

    producer = make_producer(ours)
    await producer.start()
    try:
        poller = TimerPoller(a, producer, SchedulerSettings())
        assert await poller.release_due() == 1
        assert await poller.release_due() == 0  # the other namespace's due timer is not ours to fire
    finally:
        await producer.stop()
    assert [r.value for r in await read_all(ours, topic)] == [b"ours"]
    assert await a.state("same-key") == "fired"
    assert await b.state("same-key") == "pending"
    assert await a.cancel("same-key") is False  # already fired here; the other one is untouched
    assert await b.cancel("same-key") is True
