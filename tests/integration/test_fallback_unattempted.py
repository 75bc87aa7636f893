"""A provider outage spent on open breakers does not use up a message's retries; its sends slow
down (doubling past the schedule, up to an hour). A send not attempted ends the run once it is
older than the unattempted max age, or, where exhaustion escalates (a high-tier push), the
schedule's own wall time: the push then escalates to email."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from consumers.devstack import DevStack
from consumers.infra.settings import FallbackSettings
from consumers.runtime.kafka import make_producer
from consumers.scheduler.retries import retry_timer_key, run_bound
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, past_clock
from tests.kafka_helpers import read_all

SCHEDULE = [5.0, 300.0, 1800.0]
PUSH = [5.0, 30.0, 120.0, 600.0]
EMAIL = [10.0, 60.0, 300.0, 1800.0]
MAX_AGE_S = 14_400.0  # HERALD_FALLBACK__UNATTEMPTED_MAX_AGE_S here (default a day)
JITTER = 0.2  # the harness draws rand = 0.5: every delay is its step exactly


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    settings = make_settings(
        stack,
        fallback=FallbackSettings(
            retry_schedules_s={"webhook": SCHEDULE, "push": PUSH, "email": EMAIL},
            retry_jitter=JITTER,
            unattempted_max_age_s=MAX_AGE_S,
        ),
    )
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    harness = Harness(settings, pg_pool, producer, past_clock())
    await harness.setup()
    yield harness
    await harness.cleanup()
    await producer.stop()


async def _resent(h: Harness, channel: Channel, recipient: str) -> ChannelMessage:
    topic = h.topics.channel(channel, Lane.PRIORITY)
    messages = [default_codec().decode(r.value, ChannelMessage) for r in await read_all(h.settings, topic)]
    return [m for m in messages if m.recipient == recipient][-1]


async def _run(
    h: Harness, first: ChannelMessage, answers: list[dict[str, object]]
) -> tuple[list[float], DeliveryOutcome, datetime]:
    """Fail each send with the next answer (the last one again once they run out), release its
    retry when due: the delays, the outcome that ended the run, and when retrying began."""
    current, began = first, h.clock.now()
    delays: list[float] = []
    while True:
        answer = answers[min(current.attempt, len(answers)) - 1]
        out = await h.feed(outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), **answer))
        ended = [
            default_codec().decode(o.value, DeliveryOutcome) for o in out if o.topic == h.topics.outcomes
        ]
        ended = [o for o in ended if o.status is OutcomeStatus.EXHAUSTED]
        if ended:
            return delays, ended[0], began
        key = retry_timer_key(current.idempotency_key, current.attempt + 1)
        row = await h.pool.fetchrow(
            "SELECT due_at, data FROM herald_timers WHERE namespace = $1 AND key = $2",
            h.settings.topic_prefix,
            key,
        )
        assert row is not None and json.loads(row["data"])["attempt"] == current.attempt + 1
        delay = (row["due_at"] - h.clock.now()).total_seconds()
        assert await h.advance(delay - 0.5) == 0
        assert await h.advance(0.5) == 1
        delays.append(delay)
        current = await _resent(h, first.channel, first.recipient)
        assert current.attempt == len(delays) + 1
        assert len(delays) < 30, "the run never ended"


async def test_sends_no_provider_took_slow_down_and_end_at_the_max_age(h: Harness) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    first = channel_message(
        "owner-u1", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient=endpoint
    )
    delays, exhausted, began = await _run(h, first, [{"reason": "circuit_open"}])
    # Every provider's breaker open: no send used up the schedule, each two moved the wait a step;
    # past the schedule the wait doubled from its last step, to the hour.
    assert delays == [5.0, 5.0, 5.0, 300.0, 300.0, 1800.0, 1800.0, 3600.0, 3600.0, 3600.0]
    # The eleventh failed 15,015 s in, past the max age (before: at the schedule's 2,526 s)
    assert h.clock.now() - began >= timedelta(seconds=MAX_AGE_S) > run_bound(SCHEDULE, JITTER)
    assert exhausted.detail is not None and "not attempted" in exhausted.detail
    assert await h.advance(SCHEDULE[-1] * 10) == 0


async def test_a_normal_email_outage_longer_than_its_schedule_ends_no_message_exhausted(h: Harness) -> None:
    user = f"u-{uuid.uuid4().hex[:10]}"
    email = channel_message(user, Channel.EMAIL, Tier.MEDIUM, occurred_at=h.clock.now())
    # SES is out for 3 hours (every breaker open), then accepts: the send after the outage goes out.
    outage_ends = h.clock.now() + timedelta(hours=3)
    current, delays = email, []
    while h.clock.now() < outage_ends:
        out = await h.feed(
            outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), reason="circuit_open")
        )
        assert not [o for o in out if o.topic == h.topics.outcomes], "ended during the outage"
        row = await h.pool.fetchrow(
            "SELECT due_at FROM herald_timers WHERE namespace = $1 AND key = $2",
            h.settings.topic_prefix,
            retry_timer_key(current.idempotency_key, current.attempt + 1),
        )
        assert row is not None
        delay = (row["due_at"] - h.clock.now()).total_seconds()
        assert await h.advance(delay) == 1
        delays.append(delay)
        current = await _resent(h, Channel.EMAIL, email.recipient)
    # 3 h is past the schedule's wall time (2,604 s at +20 %): before, the run ended exhausted there
    assert delays == [10.0, 10.0, 10.0, 60.0, 60.0, 300.0, 300.0, 1800.0, 1800.0, 3600.0, 3600.0]
    assert current.attempt == len(delays) + 1


async def test_real_refusals_still_step_the_schedule_on(h: Harness) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    first = channel_message(
        "owner-u2", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient=endpoint
    )
    # Two open breakers, then the provider refuses (503) every time: exhausted after schedule + 1
    # real tries (sends 3 to 6), the last one a real try; the two sends not attempted count half
    # a step each in the waits (a step on), never in the count of tries.
    open_: dict[str, object] = {"reason": "circuit_open"}
    answers: list[dict[str, object]] = [open_, open_, {"error_code": "503"}]
    delays, exhausted, _ = await _run(h, first, answers)
    assert delays == [5.0, 5.0, 300.0, 1800.0, 1800.0]
    assert exhausted.reason == "503" and "not attempted" not in (exhausted.detail or "")


async def test_a_high_push_whose_provider_is_down_escalates_within_its_schedules_time(h: Harness) -> None:
    user = f"u-{uuid.uuid4().hex[:10]}"
    await h.add_recipient(user, f"{user}@example.com")
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    # FCM refuses the first send (503) and its breaker opens: every retry after finds it open
    # (the breaker says 15 s), as in an outage that lasts all day.
    answers: list[dict[str, object]] = [
        {"error_code": "503"},
        {"reason": "circuit_open", "retry_after_ms": 15_000},
    ]
    delays, exhausted, began = await _run(h, push, answers)
    assert delays == [5.0, 15.0, 30.0, 30.0, 120.0, 120.0, 600.0]
    took = (h.clock.now() - began).total_seconds()
    assert took == 920.0  # past the 906 s bound (755 s at +20 %) on the eighth send: not a day
    assert exhausted.reason == "circuit_open"
    await h.release()  # the escalation step, due at once
    emails = [e for e in await h.emails() if e.user_id == user]
    assert [e.escalated_from for e in emails] == [push.idempotency_key]
