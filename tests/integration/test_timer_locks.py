"""Locks around firing timers: a cancel that skips a timer a poller holds, and an undone batch
whose locks are taken again before its timers fire one by one. Real PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers.devstack import DevStack
from consumers.infra.settings import SchedulerSettings
from consumers.runtime.handling import Output
from consumers.runtime.kafka import make_producer
from consumers.scheduler.store import Scheduler, Timer, TimerPoller
from schemas.errors import InvalidContent
from tests.conftest import make_settings


async def test_a_cancel_unless_firing_leaves_a_held_timer_pending_and_cancels_a_free_one(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings = make_settings(stack)
    scheduler = Scheduler(pg_pool, namespace=settings.topic_prefix)
    due = datetime.now(UTC) + timedelta(hours=1)
    await scheduler.arm([Timer("held", "step", due), Timer("free", "step", due)])
    async with pg_pool.acquire() as poller:  # holds "held" as a poller's batch does
        tx = poller.transaction()
        await tx.start()
        await poller.execute(
            "SELECT 1 FROM herald_timers WHERE namespace = $1 AND key = 'held' FOR UPDATE",
            settings.topic_prefix,
        )
        async with pg_pool.acquire() as conn:
            await conn.execute("SET lock_timeout = '2s'")  # a cancel that waited would fail here
            assert await scheduler.cancel("held", conn, unless_firing=True) is False
            assert await scheduler.cancel("free", conn, unless_firing=True) is True
        await tx.rollback()
    assert await scheduler.state("held") == "pending"
    assert await scheduler.state("free") == "cancelled"
    assert await scheduler.cancel("held", unless_firing=True) is True  # let go: cancelled
    assert await scheduler.state("held") == "cancelled"


@pytest.mark.parametrize("relocked", [True, False])
async def test_an_undone_batch_takes_its_locks_again_before_its_timers_fire_one_by_one(
    stack: DevStack, pg_pool: asyncpg.Pool, relocked: bool
) -> None:
    """The batch locks (here an advisory lock standing for its state rows) then fails on data: its
    savepoint's rollback lets go of them, and each timer would take its own in due order."""
    settings = make_settings(stack)
    scheduler = Scheduler(pg_pool, namespace=settings.topic_prefix)
    due = datetime.now(UTC) - timedelta(seconds=1)
    lock = 4242_0000 + (hash(settings.topic_prefix) % 10_000)
    held_when_fired: list[bool] = []

    async def take(timers: Sequence[Timer], conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)

    async def together(timers: Sequence[Timer], conn: asyncpg.Connection) -> Mapping[str, Sequence[Output]]:
        await take(timers, conn)
        raise InvalidContent("one of them is bad")

    async def alone(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        async with pg_pool.acquire() as other:  # is it held by the poll's transaction?
            free = await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock)
        held_when_fired.append(not free)
        return []

    await scheduler.arm([Timer(k, "batched", due) for k in ("a", "b")])
    producer = make_producer(settings)
    await producer.start()
    try:
        poller = TimerPoller(
            scheduler,
            producer,
            SchedulerSettings(),
            handlers={"batched": alone},
            batch_handlers={"batched": together},
            batch_locks={"batched": take} if relocked else None,
        )
        assert await poller.release_due() == 2
    finally:
        await producer.stop()
    assert held_when_fired == [relocked, relocked]
    assert [await scheduler.state(k) for k in ("a", "b")] == ["fired", "fired"]
