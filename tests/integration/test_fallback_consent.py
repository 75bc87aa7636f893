"""Preferences and quiet hours hold on every path the fallback creates messages on.

Escalation emails, digests and retries ask the same consent check as the classifier: a user who
switched a category's email off gets none of them, and one inside quiet hours gets them when the
window ends (DST night included).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest_asyncio

from consumers.infra.clock import ManualClock
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import make_producer
from schemas.models import Channel, ChannelMessage, OutcomeStatus, Tier
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, running_harness

DELAY = 300.0
DAY = 86_400.0
COLLECT = 60.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(settings: HeraldSettings, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    async with running_harness(settings, pg_pool) as harness:
        yield harness


async def _user(h: Harness, **kw: object) -> str:
    user = f"u-{uuid.uuid4().hex[:12]}"
    await h.add_recipient(user, f"{user}@example.com", **kw)
    return user


async def _opt_out(h: Harness, user: str, category: str, channel: Channel) -> None:
    await h.pool.execute(
        "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ($1, $2, $3, false)",
        user,
        category,
        channel.value,
    )


async def test_no_escalation_email_to_a_user_who_switched_that_email_off(h: Harness) -> None:
    user = await _user(h)
    await _opt_out(h, user, "payments", Channel.EMAIL)
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(outcome_of(push, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    assert await h.advance(DELAY) == 1
    assert await h.emails() == []
    ends = [
        (o.status, o.reason, o.channel)
        for o in await h.outcomes()
        if o.notification_id == push.notification_id
    ]
    assert ends == [(OutcomeStatus.SUPPRESSED, "opted_out", Channel.EMAIL)]
    # a permanent push failure of the same notification does not escalate either
    await h.feed(outcome_of(push, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now(), reason="unregistered"))
    await h.advance(1)
    assert await h.emails() == []


async def test_an_opt_out_of_another_category_does_not_stop_the_escalation(h: Harness) -> None:
    user = await _user(h)
    await _opt_out(h, user, "security", Channel.EMAIL)  # another category: irrelevant here
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(outcome_of(push, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    await h.advance(DELAY)
    assert [e.recipient for e in await h.emails()] == [f"{user}@example.com"]


async def test_no_digest_to_a_user_who_switched_activity_email_off(h: Harness) -> None:
    user = await _user(h)
    await _opt_out(h, user, "activity", Channel.EMAIL)
    now = h.clock.now()
    messages = [
        dataclasses.replace(
            channel_message(user, Channel.IN_APP, Tier.MEDIUM, event_type="comment_reply", occurred_at=now),
            category="activity",
        )
        for _ in range(2)
    ]
    for i, m in enumerate(messages):
        await h.add_inbox(m, f"reply {i}", now + timedelta(microseconds=i))
    await h.feed(*[outcome_of(m, OutcomeStatus.SENT, at=now) for m in messages])
    await h.advance(DAY)
    await h.advance(COLLECT)
    await h.advance(DAY)
    assert await h.emails() == []
    mine = [o for o in await h.outcomes() if o.user_id == user and o.channel == Channel.EMAIL]
    assert sorted((o.notification_id, o.reason) for o in mine) == sorted(
        (m.notification_id, "opted_out") for m in messages
    )


async def test_a_retry_after_an_opt_out_is_not_sent(h: Harness) -> None:
    user = await _user(h)
    email = channel_message(
        user, Channel.EMAIL, Tier.MEDIUM, occurred_at=h.clock.now(), recipient=f"{user}@example.com"
    )
    await h.feed(outcome_of(email, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), error_code="Throttling"))
    await _opt_out(h, user, "payments", Channel.EMAIL)  # during the backoff
    assert await h.advance(10) == 1
    assert await h.emails() == []
    (end,) = [o for o in await h.outcomes() if o.notification_id == email.notification_id]
    assert (end.status, end.reason) == (OutcomeStatus.SUPPRESSED, "opted_out")


async def test_a_retry_inside_quiet_hours_waits_for_the_window_end(h: Harness) -> None:
    h.clock.set(datetime(1994, 6, 1, 21, 59, 55, tzinfo=UTC))  # 22:59:55 in London (BST)
    user = await _user(h, timezone="Europe/London", quiet_start=time(23), quiet_end=time(7))
    email = channel_message(
        user, Channel.EMAIL, Tier.MEDIUM, occurred_at=h.clock.now(), recipient=f"{user}@example.com"
    )
    await h.feed(outcome_of(email, OutcomeStatus.FAILED_RETRYABLE, at=h.clock.now(), error_code="Throttling"))
    await h.advance(10)  # due at 23:00:05 local: held
    assert await h.emails() == []
    h.clock.set(datetime(1994, 6, 2, 5, 59, 59, tzinfo=UTC))
    await h.release()
    assert await h.emails() == []
    h.clock.advance(1)  # 07:00 BST
    await h.release()
    assert [e.idempotency_key for e in await h.emails()] == [email.idempotency_key]


async def test_an_escalation_due_at_23_in_a_22_to_7_window_fires_at_7_local_on_a_dst_night(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    # New York sprang forward on 1990-04-01 at 02:00: the night of 03-31 is an hour short.
    start = datetime(1990, 4, 1, 3, 55, tzinfo=UTC)  # 22:55 EST on 03-31
    producer = make_producer(settings)
    await producer.start()
    h = Harness(settings, pg_pool, producer, ManualClock(start))
    await h.setup()
    try:
        user = await _user(h, timezone="America/New_York", quiet_start=time(22), quiet_end=time(7))
        push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=start)
        await h.feed(outcome_of(push, OutcomeStatus.SENT, at=start, provider="fcm"))
        assert await h.advance(DELAY) == 1  # 23:00 EST: due, inside the window → held
        assert await h.emails() == []
        release = datetime(1990, 4, 1, 11, 0, tzinfo=UTC)  # 07:00 EDT (12:00 UTC had DST not started)
        h.clock.set(release - timedelta(seconds=1))
        await h.release()
        assert await h.emails() == []
        h.clock.set(release)
        await h.release()
        emails: list[ChannelMessage] = await h.emails()
        assert [e.recipient for e in emails] == [f"{user}@example.com"]
        escalated = [o for o in await h.outcomes() if o.status == OutcomeStatus.ESCALATED]
        assert [o.recorded_at for o in escalated] == [release]
    finally:
        await h.cleanup()
        await producer.stop()
