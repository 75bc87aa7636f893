"""A poller batch that holds its rows long is logged with where the time went.

A batch keeps its timers' rows, and the rows its fire handlers locked (a digest, a workflow),
locked until it commits, broker acks included; before this, a batch that stalled there said
nothing unless it ended in an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers.devstack import DevStack
from consumers.infra.settings import SchedulerSettings
from consumers.runtime.handling import Output
from consumers.runtime.kafka import create_topics, make_producer
from consumers.scheduler.store import Scheduler, Timer, TimerPoller
from schemas.errors import DependencyUnavailable
from tests.conftest import make_settings


async def test_a_slow_batch_is_logged_with_its_handlers_acks_and_commit_times(
    stack: DevStack, pg_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(stack)
    topic = f"{settings.topic_prefix}.timers"
    await create_topics(settings, [topic])
    scheduler = Scheduler(pg_pool, namespace=settings.topic_prefix)

    async def slow(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        await conn.execute("SELECT pg_sleep(0.3)")  # a lock wait, as far as the batch can tell
        return [Output(topic, b"slow", None)]

    async def quick(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        return [Output(topic, b"quick", None)]

    due = datetime.now(UTC) - timedelta(seconds=1)
    producer = make_producer(settings)
    await producer.start()
    try:
        handlers = {"slow": slow, "quick": quick}
        await scheduler.arm([Timer("quick", "quick", due)])
        with caplog.at_level(logging.WARNING, logger="consumers.scheduler.store"):
            assert await TimerPoller(scheduler, producer, SchedulerSettings(), handlers).release_due() == 1
        assert not caplog.records  # a batch under the threshold (5 s) says nothing
        poller = TimerPoller(scheduler, producer, SchedulerSettings(), handlers, slow_batch_s=0.25)
        await scheduler.arm([Timer("slow", "slow", due), Timer("quick-2", "quick", due)])
        with caplog.at_level(logging.WARNING, logger="consumers.scheduler.store"):
            assert await poller.release_due() == 2
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert message.startswith("scheduler: a batch of 2 timers (quick, slow) held its rows ")
    assert "broker acks of 2 records" in message
    handlers_s = float(message.split("select and handlers ")[1].split("s,")[0])
    assert handlers_s >= 0.3


async def test_a_slow_batch_that_fails_is_logged_and_its_timer_stays_pending(
    stack: DevStack, pg_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """A stall that ends in an outage (here after 0.3 s) is not silent either, and the timer is
    fired by the next batch, not lost."""
    settings = make_settings(stack)
    topic = f"{settings.topic_prefix}.timers"
    await create_topics(settings, [topic])
    scheduler = Scheduler(pg_pool, namespace=settings.topic_prefix)
    outage = True

    async def stalls(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        await conn.execute("SELECT pg_sleep(0.3)")
        if outage:
            raise DependencyUnavailable("the contact store stopped answering")
        return [Output(topic, b"late", None)]

    producer = make_producer(settings)
    await producer.start()
    try:
        poller = TimerPoller(scheduler, producer, SchedulerSettings(), {"stalls": stalls}, slow_batch_s=0.25)
        await scheduler.arm([Timer("stalls", "stalls", datetime.now(UTC) - timedelta(seconds=1))])
        with (
            caplog.at_level(logging.WARNING, logger="consumers.scheduler.store"),
            pytest.raises(DependencyUnavailable),
        ):
            await poller.release_due()
        outage = False
        assert await poller.release_due() == 1  # still pending after the failed batch
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].startswith("scheduler: a batch held its rows 0.")
