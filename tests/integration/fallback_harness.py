"""Shared pieces of the fallback tests: the handler and poller on a manual clock, real servers."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from consumers.fallback.context import FallbackContext
from consumers.fallback.handler import FallbackHandler, Signal
from consumers.fallback.process import fire_batch_handlers, fire_batch_locks, fire_handlers
from consumers.infra.clock import ManualClock
from consumers.infra.keys import idempotency_key, notification_id, outcome_id
from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import DeadLetter, Incoming, Output
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler, TimerPoller
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier
from tests.kafka_helpers import read_all

__all__ = ["Harness", "channel_message", "outcome_of", "past_clock"]

# Every test runs its clock in its own stretch of the past, each earlier than the last, so a
# timer left pending by one test (the timers table is shared by the session) is never due in
# a later one, and real-clock timers of other tests are never due in these.
_ERA = itertools.count()


def past_clock() -> ManualClock:
    return ManualClock(datetime(1995, 1, 1, 6, tzinfo=UTC) - timedelta(days=30 * next(_ERA)))


def channel_message(
    user_id: str,
    channel: Channel,
    tier: Tier,
    *,
    event_type: str = "payment_receipt",
    occurred_at: datetime,
    recipient: str | None = None,
    **kw: Any,
) -> ChannelMessage:
    event_id = str(uuid.uuid4())
    recipient = recipient or user_id
    return ChannelMessage(
        notification_id=notification_id(event_id, user_id),
        event_id=event_id,
        event_type=event_type,
        user_id=user_id,
        channel=channel,
        lane=Lane.PRIORITY,
        tier=tier,
        category="payments",
        recipient=recipient,
        template=event_type,
        locale="en",
        idempotency_key=idempotency_key(event_id, channel.value, recipient),
        occurred_at=occurred_at,
        payload='{"amount": "12.50"}',
        **kw,
    )


def outcome_of(message: ChannelMessage, status: OutcomeStatus, *, at: datetime, **kw: Any) -> DeliveryOutcome:
    return DeliveryOutcome(
        outcome_id=outcome_id(message.idempotency_key, status.value, message.attempt),
        notification_id=message.notification_id,
        event_id=message.event_id,
        event_type=message.event_type,
        user_id=message.user_id,
        tier=message.tier,
        status=status,
        occurred_at=message.occurred_at,
        recorded_at=at,
        channel=message.channel,
        lane=message.lane,
        idempotency_key=message.idempotency_key,
        attempt=message.attempt,
        message=message,
        **kw,
    )


class Harness:
    """The fallback handler fed directly (no group to wait for) and its poller on a manual clock."""

    def __init__(
        self, settings: HeraldSettings, pool: asyncpg.Pool, producer: AIOKafkaProducer, clock: ManualClock
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.clock = clock
        self.topics = Topics(settings.topic_prefix)
        self.producer = producer
        self.scheduler = Scheduler(pool, clock, namespace=settings.topic_prefix)
        self.ctx = FallbackContext(
            scheduler=self.scheduler,
            topics=self.topics,
            codec=default_codec(),
            settings=settings.fallback,
            clock=clock,
        )
        self.handler = FallbackHandler(self.ctx, pool, rand=lambda: 0.5)
        self.poller = TimerPoller(
            self.scheduler,
            producer,
            settings.scheduler,
            handlers=fire_handlers(self.ctx),
            batch_handlers=fire_batch_handlers(self.ctx),
            batch_locks=fire_batch_locks(),
        )
        self._offset = itertools.count()

    async def setup(self) -> None:
        await create_topics(
            self.settings, [self.topics.outcomes, self.topics.receipts, *self.topics.channel_topics()]
        )

    @property
    def email_topic(self) -> str:
        return self.topics.channel(Channel.EMAIL, Lane.PRIORITY)

    async def feed(self, *values: Signal) -> list[Output]:
        """Hand records to the handler as the runner would, and produce what it returns."""
        batch = [Incoming("t", 0, next(self._offset), None, v, (), 0) for v in values]
        outputs: list[Output] = []
        for result in await self.handler.handle(batch):
            assert not isinstance(result, DeadLetter), result
            outputs += result
        futures = [await self.producer.send(o.topic, o.value, key=o.key) for o in outputs]
        for f in futures:
            await f
        return outputs

    async def release(self) -> int:
        total = 0
        while (n := await self.poller.release_due()) > 0:
            total += n
        return total

    async def advance(self, seconds: float) -> int:
        self.clock.advance(seconds)
        return await self.release()

    async def emails(self) -> list[ChannelMessage]:
        return [
            default_codec().decode(r.value, ChannelMessage)
            for r in await read_all(self.settings, self.email_topic)
        ]

    async def outcomes(self) -> list[DeliveryOutcome]:
        return [
            default_codec().decode(r.value, DeliveryOutcome)
            for r in await read_all(self.settings, self.topics.outcomes)
        ]

    async def add_recipient(self, user_id: str, email: str | None, **kw: Any) -> None:
        cols = {"user_id": user_id, "email": email, **kw}
        names = ", ".join(cols)
        params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
        await self.pool.execute(f"INSERT INTO herald_recipients ({names}) VALUES ({params})", *cols.values())

    async def add_inbox(self, message: ChannelMessage, title: str, created_at: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO herald_inbox (user_id, notification_id, type, category, title, body, "
            "idempotency_key, created_at, tenant) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            message.user_id,
            message.notification_id,
            message.event_type,
            message.category,
            title,
            f"body of {title}",
            message.idempotency_key,
            created_at,
            message.tenant or "",
        )

    async def cleanup(self, keys: Sequence[str] = ()) -> None:
        # Timers this test left pending live in its own past era; cancel them so nothing lingers.
        await self.pool.execute(
            "UPDATE herald_timers SET state = 'cancelled' WHERE state = 'pending' AND due_at < $1",
            datetime(1996, 1, 1, tzinfo=UTC),
        )


@asynccontextmanager
async def running_harness(settings: HeraldSettings, pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    """A Harness on its own started producer, cleaned up afterwards."""
    producer = make_producer(settings)
    await producer.start()
    harness = Harness(settings, pool, producer, past_clock())
    await harness.setup()
    try:
        yield harness
    finally:
        await harness.cleanup()
        await producer.stop()
