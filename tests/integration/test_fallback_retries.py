"""Retries of failed_retryable outcomes on durable timers, exhaustion, and the critical watch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from consumers.devstack import DevStack
from consumers.infra.settings import FallbackSettings, HeraldSettings
from consumers.runtime.kafka import make_producer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, Lane, OutcomeStatus, Receipt, ReceiptStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, past_clock
from tests.kafka_helpers import read_all

SCHEDULE = [5.0, 300.0, 1800.0]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    settings = make_settings(
        stack,
        fallback=FallbackSettings(
            retry_schedules_s={"webhook": SCHEDULE, "push": [1.0]},
            retry_jitter=0.2,
            critical_check_after_s=120,
        ),
    )
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    harness = Harness(settings, pg_pool, producer, past_clock())
    await harness.setup()
    yield harness
    await harness.cleanup()
    await producer.stop()


async def _webhook_messages(h: Harness) -> list[ChannelMessage]:
    topic = h.topics.channel(Channel.WEBHOOK, Lane.PRIORITY)
    return [default_codec().decode(r.value, ChannelMessage) for r in await read_all(h.settings, topic)]


async def test_webhook_failing_three_times_is_retried_each_time_with_the_same_key(h: Harness) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    first = channel_message(
        "owner-1",
        Channel.WEBHOOK,
        Tier.SYSTEM,
        event_type="system.invoice",
        occurred_at=h.clock.now(),
        recipient=endpoint,
    )
    exhausted_before = _metric("herald_retries_exhausted_total", channel="webhook")
    current = first
    for attempt in (1, 2, 3):
        assert current.attempt == attempt
        await h.feed(outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), error_code="503"))
        step = SCHEDULE[attempt - 1]
        # rand=0.5 in the harness: no jitter; one second early nothing is released
        assert await h.advance(step - 1) == 0
        assert await h.advance(1) == 1
        sent = await _webhook_messages(h)
        assert len(sent) == attempt
        current = sent[-1]
        assert current.attempt == attempt + 1
        assert current.idempotency_key == first.idempotency_key  # the receiver's webhook-id never changes
        assert current.recipient == endpoint
    # Attempt 4 fails too: the schedule is used up.
    outputs = await h.feed(outcome_of(current, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now()))
    assert await h.advance(SCHEDULE[-1] * 10) == 0
    assert len(await _webhook_messages(h)) == 3
    (exhausted,) = [
        default_codec().decode(o.value, type(outcome_of(first, OutcomeStatus.SENT, at=h.clock.now())))
        for o in outputs
    ]
    assert (exhausted.status, exhausted.notification_id, exhausted.attempt) == (
        OutcomeStatus.EXHAUSTED,
        first.notification_id,
        4,
    )
    assert _metric("herald_retries_exhausted_total", channel="webhook") == exhausted_before + 1
    # Kafka keys: webhooks by endpoint id.
    topic = h.topics.channel(Channel.WEBHOOK, Lane.PRIORITY)
    assert {r.key for r in await read_all(h.settings, topic)} == {endpoint.encode()}


async def test_a_replayed_failure_arms_one_retry(h: Harness) -> None:
    msg = channel_message(
        "owner-2", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient="ep-x"
    )
    failed = outcome_of(msg, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now())
    await h.feed(failed, failed)
    await h.feed(failed)
    assert await h.advance(SCHEDULE[0] * 2) == 1


async def test_the_retries_of_one_batch_are_armed_together_and_counted_once_each(h: Harness) -> None:
    one, two = (
        channel_message(
            f"owner-b{i}", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient=f"ep-b{i}"
        )
        for i in range(2)
    )
    sent = channel_message(
        "owner-b2", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient="ep-b2"
    )
    before = _metric("herald_retries_scheduled_total", channel="webhook")
    failed = outcome_of(one, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now())
    await h.feed(
        failed,
        outcome_of(sent, OutcomeStatus.SENT, at=h.clock.now()),
        outcome_of(two, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now()),
        failed,  # replayed in the same batch: one timer
    )
    assert _metric("herald_retries_scheduled_total", channel="webhook") == before + 2
    assert await h.advance(SCHEDULE[0] * 2) == 2
    assert {m.idempotency_key for m in await _webhook_messages(h)} >= {
        one.idempotency_key,
        two.idempotency_key,
    }


async def test_retry_after_is_honoured(h: Harness) -> None:
    msg = channel_message(
        "owner-3", Channel.WEBHOOK, Tier.SYSTEM, occurred_at=h.clock.now(), recipient="ep-y"
    )
    await h.feed(outcome_of(msg, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), retry_after_ms=60_000))
    assert await h.advance(59) == 0
    assert await h.advance(1) == 1


async def test_high_push_whose_retries_run_out_escalates_to_email(h: Harness) -> None:
    user = f"u-{uuid.uuid4().hex[:10]}"
    await h.add_recipient(user, f"{user}@example.com")
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now(), attempt=2)
    await h.feed(outcome_of(push, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now()))
    await h.release()
    emails = await h.emails()
    assert [e.escalated_from for e in emails] == [push.idempotency_key]
    reasons = {o.reason for o in await h.outcomes() if o.status == OutcomeStatus.ESCALATED}
    assert reasons == {"push_failed:exhausted"}


async def test_critical_with_no_channel_through_is_counted_and_logged(h: Harness, caplog: object) -> None:
    before = _metric("herald_critical_undelivered_total")
    user = f"u-{uuid.uuid4().hex[:10]}"
    now = h.clock.now()
    lost = [
        channel_message(user, c, Tier.CRITICAL, event_type="security_alert", occurred_at=now)
        for c in (Channel.PUSH, Channel.SMS, Channel.EMAIL)
    ]
    # one notification id for all three channels, as the classifier does
    lost = [
        ChannelMessage(
            **{**m.to_record(), "notification_id": lost[0].notification_id, "event_id": lost[0].event_id}
        )
        for m in lost
    ]
    await h.feed(
        *[outcome_of(m, OutcomeStatus.FAILED_PERMANENT, at=now) for m in lost[:2]],
        outcome_of(lost[2], OutcomeStatus.FAILED_RETRYABLE, at=now),
    )
    reached = channel_message(user, Channel.SMS, Tier.CRITICAL, event_type="security_alert", occurred_at=now)
    await h.feed(outcome_of(reached, OutcomeStatus.FAILED_PERMANENT, at=now))
    late = channel_message(user, Channel.PUSH, Tier.CRITICAL, event_type="security_alert", occurred_at=now)
    await h.feed(
        outcome_of(late, OutcomeStatus.SENT, at=now.replace(year=now.year + 1))
    )  # sent, but far too late
    by_receipt = channel_message(
        user, Channel.PUSH, Tier.CRITICAL, event_type="security_alert", occurred_at=now
    )
    await h.feed(outcome_of(by_receipt, OutcomeStatus.FAILED_RETRYABLE, at=now))
    h.clock.advance(30)
    await h.feed(
        outcome_of(reached, OutcomeStatus.SENT, at=h.clock.now()),
        Receipt(by_receipt.notification_id, user, ReceiptStatus.DELIVERED, at=h.clock.now()),
    )
    assert await h.advance(89) >= 0
    assert _metric("herald_critical_undelivered_total") == before  # not yet judged
    await h.advance(1)
    assert _metric("herald_critical_undelivered_total") == before + 2  # lost and late
    verdicts = dict(
        await h.pool.fetch(
            "SELECT notification_id, verdict FROM herald_critical_watch WHERE user_id = $1", user
        )
    )
    assert verdicts == {
        lost[0].notification_id: "undelivered",
        reached.notification_id: "delivered",
        late.notification_id: "undelivered",
        by_receipt.notification_id: "delivered",
    }
    assert lost[0].notification_id in caplog.text  # type: ignore[attr-defined]


async def test_a_run_of_critical_outcomes_arms_one_check_each_and_marks_the_earliest_send(h: Harness) -> None:
    """The watch of a run is written in three statements: one row and one check per notification,
    and the send that came first (the first of equal times) as the one that reached the user."""
    user = f"u-{uuid.uuid4().hex[:10]}"
    now = h.clock.now()
    first = channel_message(user, Channel.PUSH, Tier.CRITICAL, event_type="security_alert", occurred_at=now)
    same = {"notification_id": first.notification_id, "event_id": first.event_id}
    sms, email = (
        ChannelMessage(**{**channel_message(user, c, Tier.CRITICAL, occurred_at=now).to_record(), **same})
        for c in (Channel.SMS, Channel.EMAIL)
    )
    other = channel_message(user, Channel.SMS, Tier.CRITICAL, event_type="security_alert", occurred_at=now)
    await h.feed(
        outcome_of(first, OutcomeStatus.SENT, at=now.replace(second=30)),
        outcome_of(other, OutcomeStatus.FAILED_PERMANENT, at=now),
        outcome_of(sms, OutcomeStatus.SENT, at=now.replace(second=10)),
        outcome_of(email, OutcomeStatus.SENT, at=now.replace(second=10)),
    )
    rows = await h.pool.fetch(
        "SELECT notification_id, deadline, first_sent_at, first_channel FROM herald_critical_watch "
        "WHERE user_id = $1",
        user,
    )
    watch = {r["notification_id"]: (r["deadline"], r["first_sent_at"], r["first_channel"]) for r in rows}
    deadline = now + timedelta(seconds=120)
    assert watch == {
        first.notification_id: (deadline, now.replace(second=10), "sms"),
        other.notification_id: (deadline, None, None),
    }
    timers = await h.pool.fetch(
        "SELECT data FROM herald_timers WHERE kind = 'critical_check' AND data->>'notification_id' = ANY($1)",
        [first.notification_id, other.notification_id],
    )
    assert len(timers) == 2


async def test_settings_default_webhook_schedule_matches_the_architecture(settings: HeraldSettings) -> None:
    assert settings.fallback.retry_schedules_s["webhook"] == [5, 300, 1800, 7200, 18000, 36000, 36000]
