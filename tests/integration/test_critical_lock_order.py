"""A fallback batch and a poll lock critical watch rows in one order (``notification_id``), so they
cannot deadlock (PostgreSQL would abort one: an outage retried after a back-off). Real servers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from consumers.devstack import DevStack
from consumers.fallback.handler import FallbackHandler
from consumers.fallback.process import fire_batch_handlers, fire_batch_locks, fire_handlers
from consumers.infra.settings import FallbackSettings
from consumers.runtime.handling import Incoming
from consumers.runtime.kafka import make_producer
from consumers.scheduler.store import Scheduler, TimerPoller
from schemas.models import Channel, DeliveryOutcome, OutcomeStatus, Receipt, ReceiptStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, past_clock
from tests.pg_helpers import waits_for_a_lock
from tests.waiting import until

AFTER = 120.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    settings = make_settings(stack, fallback=FallbackSettings(critical_check_after_s=AFTER))
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    harness = Harness(settings, pg_pool, producer, past_clock())
    await harness.setup()
    yield harness
    await harness.cleanup()
    await producer.stop()


async def _pool(stack: DevStack, name: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        stack.database_url, min_size=1, max_size=2, server_settings={"application_name": name}
    )
    assert pool is not None
    return pool


async def test_receipts_in_the_opposite_order_of_a_polls_checks_do_not_deadlock(
    stack: DevStack, h: Harness
) -> None:
    """Critical notifications x and y, both watched; the poll meets x's check first (due first) and
    the receipts come for y then x. A third connection holds x's receipt row (an insert not yet
    committed) so that the batch has marked y reached and waits before x, while the poll has checked
    x and waits for y; then it lets go. Taken in batch and due order, the batch then waits for x,
    held by the poll: a deadlock. In ``notification_id`` order both take x first."""
    now = h.clock.now()
    a, b = (
        channel_message(
            f"u-lock-{i}", Channel.SMS, Tier.CRITICAL, event_type="security_alert", occurred_at=now
        )
        for i in range(2)
    )
    low, high = sorted((a, b), key=lambda m: m.notification_id)
    # x (due first) has the higher id: the poll's due order is the opposite of notification_id order
    x = dataclasses.replace(high, occurred_at=now - timedelta(seconds=1))
    y = low
    await h.feed(*(outcome_of(m, OutcomeStatus.FAILED_PERMANENT, at=now) for m in (x, y)))
    h.clock.advance(AFTER)
    poller_pool = await _pool(stack, "critical-lock-poller")
    fallback_pool = await _pool(stack, "critical-lock-fallback")
    try:
        poller = TimerPoller(
            Scheduler(poller_pool, h.clock, namespace=h.settings.topic_prefix),
            h.producer,
            h.settings.scheduler,
            handlers=fire_handlers(h.ctx),
            batch_handlers=fire_batch_handlers(h.ctx),
            batch_locks=fire_batch_locks(),
        )
        handler = FallbackHandler(h.ctx, fallback_pool, rand=lambda: 0.5)
        at = h.clock.now() - timedelta(seconds=AFTER - 5)  # delivered in time
        receipts: list[Incoming[DeliveryOutcome | Receipt]] = [
            Incoming(
                "t", 0, i, None, Receipt(m.notification_id, m.user_id, ReceiptStatus.DELIVERED, at=at), (), 0
            )
            for i, m in enumerate([y, x])
        ]
        async with h.pool.acquire() as blocker:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute(
                "INSERT INTO herald_receipts (notification_id, status, user_id, at) VALUES ($1, 'delivered', $2, $3)",
                x.notification_id,
                x.user_id,
                at,
            )
            fallback = asyncio.ensure_future(handler.handle(receipts))
            await until(
                lambda: waits_for_a_lock(h.pool, "critical-lock-fallback"),
                what="the batch waits for x's receipt",
                timeout=30,
            )
            polling = asyncio.ensure_future(poller.release_due())

            async def poll_stopped() -> bool:
                return polling.done() or await waits_for_a_lock(h.pool, "critical-lock-poller")

            await until(poll_stopped, what="the poll waits for a lock or is done", timeout=30)
            await tx.rollback()
        # a deadlock raises in one of them (after PostgreSQL's deadlock_timeout)
        results, released = await asyncio.wait_for(asyncio.gather(fallback, polling), 30)
    finally:
        await poller_pool.close()
        await fallback_pool.close()
    assert len(results) == 2 and released == 2
    verdicts = await h.pool.fetch(
        "SELECT notification_id, verdict FROM herald_critical_watch WHERE notification_id = ANY($1::text[])",
        [x.notification_id, y.notification_id],
    )
    assert {r["notification_id"]: r["verdict"] for r in verdicts} == {
        x.notification_id: "delivered",
        y.notification_id: "delivered",
    }
