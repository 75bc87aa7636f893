"""One timer that always fails never holds back the others, and never stops the poller.

Before the savepoints, a fire handler's exception (a RecordError, or a statement PostgreSQL
refused, which aborts the transaction) rolled back the whole batch at every poll, ended the poller
task and with it the fallback process, which hit the same timer again after every restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from consumers.devstack import DevStack
from consumers.infra.settings import HeraldSettings, SchedulerSettings
from consumers.runtime.handling import Output
from consumers.runtime.kafka import create_topics, make_producer
from consumers.scheduler.store import Scheduler, Timer, TimerPoller, publish_timer
from consumers.scheduler.timer import FireBatchHandler, FireHandler
from schemas.errors import DependencyUnavailable, InvalidContent
from tests.conftest import make_settings
from tests.kafka_helpers import read_all


def _failed_count(kind: str) -> float:
    return REGISTRY.get_sample_value("herald_timers_failed_total", {"kind": kind}) or 0.0


async def _timers(stack: DevStack, pg_pool: asyncpg.Pool) -> tuple[HeraldSettings, str, Scheduler]:
    """This test's settings, a topic its timers publish to, and a scheduler in its namespace."""
    settings = make_settings(stack)
    topic = f"{settings.topic_prefix}.timers"
    await create_topics(settings, [topic])
    return settings, topic, Scheduler(pg_pool, namespace=settings.topic_prefix)


@contextlib.asynccontextmanager
async def _batch_poller(
    settings: HeraldSettings, scheduler: Scheduler, alone: FireHandler, together: FireBatchHandler
) -> AsyncIterator[TimerPoller]:
    """A poller whose ``batched`` timers fire ``together``, or ``alone`` one by one."""
    producer = make_producer(settings)
    await producer.start()
    try:
        yield TimerPoller(
            scheduler,
            producer,
            SchedulerSettings(),
            handlers={"batched": alone},
            batch_handlers={"batched": together},
        )
    finally:
        await producer.stop()


async def test_a_poison_timer_is_set_aside_and_the_good_ones_fire(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings, topic, scheduler = await _timers(stack, pg_pool)
    due = datetime.now(UTC) - timedelta(seconds=5)

    async def refused_by_postgres(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        # Work done before the failure must be undone with it (the savepoint), and a statement
        # PostgreSQL refuses aborts the transaction: without a savepoint, every timer's.
        await conn.execute("UPDATE herald_timers SET topic = 'touched' WHERE key = $1", timer.key)
        await conn.fetchval("SELECT $1::text", "nul\x00byte")
        return []

    async def record_error(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        raise InvalidContent("payload is nested too deeply to parse")

    good = [
        publish_timer(f"good-{i}", due + timedelta(milliseconds=i), topic, None, b"%d" % i) for i in range(6)
    ]
    poison = [
        Timer("poison-pg", "poison_pg", due + timedelta(milliseconds=2)),
        Timer("poison-record", "poison_record", due + timedelta(milliseconds=4)),
    ]
    await scheduler.arm([*good, *poison])
    before = _failed_count("poison_pg"), _failed_count("poison_record")
    producer = make_producer(settings)
    await producer.start()
    stopping = asyncio.Event()
    poller = TimerPoller(
        scheduler,
        producer,
        SchedulerSettings(poll_interval_s=0.05, batch_size=4),  # the poison spans two batches
        handlers={"poison_pg": refused_by_postgres, "poison_record": record_error},
    )
    task = asyncio.create_task(poller.run(stopping))
    try:
        for _ in range(200):
            if all([await scheduler.state(t.key) == "fired" for t in good]):
                break
            await asyncio.sleep(0.05)
        assert [await scheduler.state(t.key) for t in good] == ["fired"] * len(good)
        rows = {
            r["key"]: r
            for r in await pg_pool.fetch(
                "SELECT key, state, topic, last_error FROM herald_timers WHERE namespace = $1 AND key LIKE 'poison-%'",
                settings.topic_prefix,
            )
        }
        assert rows["poison-pg"]["state"] == "failed"
        assert rows["poison-pg"]["topic"] is None  # its own work was rolled back
        assert rows["poison-pg"]["last_error"].startswith("CharacterNotInRepertoireError")
        assert rows["poison-record"]["state"] == "failed"
        assert rows["poison-record"]["last_error"] == "InvalidContent: payload is nested too deeply to parse"
        assert (_failed_count("poison_pg"), _failed_count("poison_record")) == (before[0] + 1, before[1] + 1)
        assert not task.done()  # the poller keeps running: a timer armed now is released too
        await scheduler.arm([publish_timer("later", datetime.now(UTC), topic, None, b"later")])
        for _ in range(200):
            if await scheduler.state("later") == "fired":
                break
            await asyncio.sleep(0.05)
        assert await scheduler.state("later") == "fired"
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await producer.stop()
    assert sorted(r.value for r in await read_all(settings, topic)) == sorted(
        [t.payload for t in good if t.payload is not None] + [b"later"]
    )


async def test_an_outage_in_a_fire_handler_leaves_the_batch_pending_for_the_next_poll(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings, topic, scheduler = await _timers(stack, pg_pool)
    due = datetime.now(UTC) - timedelta(seconds=1)
    calls = 0

    async def flaky(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DependencyUnavailable("profile lookup: PostgreSQL timed out")
        return [Output(topic, b"flaky", None)]

    await scheduler.arm([publish_timer("good", due, topic, None, b"good"), Timer("flaky", "flaky", due)])
    producer = make_producer(settings)
    await producer.start()
    try:
        poller = TimerPoller(scheduler, producer, SchedulerSettings(), handlers={"flaky": flaky})
        with pytest.raises(DependencyUnavailable):
            await poller.release_due()  # an outage fails the batch: the good timer waits with it
        assert [await scheduler.state(k) for k in ("good", "flaky")] == ["pending", "pending"]
        assert await poller.release_due() == 2
    finally:
        await producer.stop()
    assert [await scheduler.state(k) for k in ("good", "flaky")] == ["fired", "fired"]
    assert sorted(r.value for r in await read_all(settings, topic)) == [b"flaky", b"good"]


async def test_a_batch_that_fails_on_data_is_undone_and_its_timers_fire_one_by_one(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings, topic, scheduler = await _timers(stack, pg_pool)
    due = datetime.now(UTC) - timedelta(seconds=1)
    keys = ["one", "bad", "two"]

    async def together(timers: Sequence[Timer], conn: asyncpg.Connection) -> Mapping[str, Sequence[Output]]:
        await conn.execute("UPDATE herald_timers SET topic = 'touched' WHERE key = ANY($1::text[])", keys)
        raise InvalidContent("one of them is bad")

    async def alone(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        if timer.key == "bad":
            raise InvalidContent("this one")
        return [Output(topic, timer.key.encode(), None)]

    await scheduler.arm(
        [Timer(k, "batched", due + timedelta(milliseconds=i)) for i, k in enumerate([*keys, "deep"])]
    )
    # Data PostgreSQL stores but Python cannot read (RecursionError, not a ValueError): that timer
    # alone is set aside; it must not escape the poll and stop the poller (a crash loop).
    await pg_pool.execute(
        "UPDATE herald_timers SET data = $1::jsonb WHERE namespace = $2 AND key = 'deep'",
        '{"a":' * 5000 + "1" + "}" * 5000,
        settings.topic_prefix,
    )
    undone = REGISTRY.get_sample_value("herald_timer_batches_undone_total", {"kind": "batched"}) or 0.0
    async with _batch_poller(settings, scheduler, alone, together) as poller:
        assert await poller.release_due() == 4
    rows = await pg_pool.fetch(
        "SELECT key, state, topic, last_error FROM herald_timers WHERE namespace = $1 ORDER BY due_at",
        settings.topic_prefix,
    )
    assert [(r["key"], r["state"], r["topic"]) for r in rows] == [
        ("one", "fired", None),  # the batch's work was undone
        ("bad", "failed", None),
        ("two", "fired", None),
        ("deep", "failed", None),
    ]
    assert rows[3]["last_error"].startswith("RecursionError")
    assert REGISTRY.get_sample_value("herald_timer_batches_undone_total", {"kind": "batched"}) == undone + 1
    assert sorted(r.value for r in await read_all(settings, topic)) == [b"one", b"two"]


async def test_an_outage_in_a_batch_fails_the_poll_and_a_timer_the_batch_leaves_out_fires_alone(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings, topic, scheduler = await _timers(stack, pg_pool)
    due = datetime.now(UTC) - timedelta(seconds=1)
    calls = 0

    async def together(timers: Sequence[Timer], conn: asyncpg.Connection) -> Mapping[str, Sequence[Output]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DependencyUnavailable("PostgreSQL timed out")
        return {
            t.key: [Output(topic, b"together:" + t.key.encode(), None)] for t in timers if t.key != "left"
        }

    async def alone(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        return [Output(topic, b"alone:" + timer.key.encode(), None)]

    await scheduler.arm([Timer(k, "batched", due) for k in ("a", "left", "b")])
    async with _batch_poller(settings, scheduler, alone, together) as poller:
        with pytest.raises(DependencyUnavailable):
            await poller.release_due()
        assert [await scheduler.state(k) for k in ("a", "left", "b")] == ["pending"] * 3
        assert await poller.release_due() == 3
    assert [await scheduler.state(k) for k in ("a", "left", "b")] == ["fired"] * 3
    assert sorted(r.value for r in await read_all(settings, topic)) == [
        b"alone:left",
        b"together:a",
        b"together:b",
    ]
