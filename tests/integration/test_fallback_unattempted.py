"""A provider outage spent on open breakers does not use up a message's retries; its age does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from consumers.devstack import DevStack
from consumers.infra.settings import FallbackSettings
from consumers.runtime.kafka import make_producer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, past_clock
from tests.kafka_helpers import read_all

SCHEDULE = [5.0, 300.0, 1800.0]
MAX_AGE = 7200.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    settings = make_settings(
        stack,
        fallback=FallbackSettings(
            retry_schedules_s={"webhook": SCHEDULE}, retry_jitter=0.2, retry_max_age_s=MAX_AGE
        ),
    )
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    harness = Harness(settings, pg_pool, producer, past_clock())
    await harness.setup()
    yield harness
    await harness.cleanup()
    await producer.stop()


async def _resent(h: Harness, endpoint: str) -> list[ChannelMessage]:
    topic = h.topics.channel(Channel.WEBHOOK, Lane.PRIORITY)
    messages = [default_codec().decode(r.value, ChannelMessage) for r in await read_all(h.settings, topic)]
    return [m for m in messages if m.recipient == endpoint]


async def test_sends_no_provider_took_do_not_exhaust_the_schedule(h: Harness) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    current = channel_message(
        "owner-u1", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient=endpoint
    )
    # Every provider's breaker open, twice the schedule's length: each send is retried at the
    # schedule's first step (no real try yet), never exhausted.
    for n in range(1, 2 * len(SCHEDULE) + 2):
        out = await h.feed(
            outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), reason="circuit_open")
        )
        assert out == [], f"send {n} ended the message"
        assert await h.advance(SCHEDULE[0]) == 1
        current = (await _resent(h, endpoint))[-1]
        assert current.attempt == n + 1
    # The provider is back and refuses twice: real tries, each moves the schedule on a step.
    for step in SCHEDULE[:2]:
        await h.feed(outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), error_code="503"))
        assert await h.advance(step - 1) == 0
        assert await h.advance(1) == 1
        current = (await _resent(h, endpoint))[-1]
    # Open breakers again until the age bound: then exhausted, not retried forever.
    assert await h.advance(MAX_AGE) == 0
    out = await h.feed(
        outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), reason="circuit_open")
    )
    (exhausted,) = [default_codec().decode(o.value, DeliveryOutcome) for o in out]
    assert exhausted.status is OutcomeStatus.EXHAUSTED
    assert exhausted.detail is not None and "not attempted" in exhausted.detail
    assert await h.advance(SCHEDULE[-1] * 10) == 0
