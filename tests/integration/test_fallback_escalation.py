"""High tier: push, then email when the push is not confirmed in time or cannot be sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest_asyncio
from prometheus_client import REGISTRY

from consumers.devstack import DevStack
from consumers.fallback.context import FallbackContext
from consumers.fallback.decisions import escalation_email_key
from consumers.fallback.handler import FallbackHandler
from consumers.fallback.process import fire_handlers
from consumers.infra.clock import SystemClock
from consumers.infra.settings import FallbackSettings, HeraldSettings, SchedulerSettings
from consumers.runtime.kafka import make_producer
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler, TimerPoller
from consumers.workflow.context import step_timer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, OutcomeStatus, Receipt, ReceiptStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import (
    Harness,
    channel_message,
    outcome_of,
    past_clock,
    running_harness,
)
from tests.kafka_helpers import (
    produce_raw,
    read_all,
    wait_for_records,
    wait_until_consumed,
    wait_until_quiet,
)
from tests.waiting import until

DELAY = 300.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(settings: HeraldSettings, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    async with running_harness(settings, pg_pool) as harness:
        yield harness


def _user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def _push_sent(h: Harness, user: str) -> ChannelMessage:
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(outcome_of(push, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    return push


async def test_push_without_receipt_escalates_to_one_email_after_the_delay(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, f"{user}@example.com")
    push = await _push_sent(h, user)
    assert await h.release() == 0
    assert await h.advance(DELAY - 1) == 0  # one second early: nothing
    assert await h.advance(1) == 1
    await h.advance(DELAY * 10)  # and nothing more, ever
    await h.feed(
        outcome_of(push, OutcomeStatus.SENT, at=h.clock.now())
    )  # a replayed outcome arms nothing new
    assert await h.advance(DELAY * 2) == 0
    emails = await h.emails()
    assert len(emails) == 1
    email = emails[0]
    assert email.recipient == f"{user}@example.com" and email.channel == Channel.EMAIL
    assert email.idempotency_key == escalation_email_key(push.idempotency_key)
    assert email.escalated_from == push.idempotency_key and email.notification_id == push.notification_id
    assert (email.template, email.payload, email.tier) == (push.template, push.payload, Tier.HIGH)
    escalated = [o for o in await h.outcomes() if o.status == OutcomeStatus.ESCALATED]
    assert [(o.notification_id, o.reason) for o in escalated] == [(push.notification_id, "push_timeout")]


async def test_a_receipt_cancels_the_escalation(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, f"{user}@example.com")
    pushes = [await _push_sent(h, user) for _ in range(3)]
    statuses = [ReceiptStatus.DELIVERED, ReceiptStatus.OPENED, ReceiptStatus.READ]
    h.clock.advance(DELAY / 2)
    await h.feed(
        *[
            Receipt(p.notification_id, user, s, at=h.clock.now(), channel=Channel.PUSH)
            for p, s in zip(pushes, statuses, strict=True)
        ]
    )
    assert await h.advance(DELAY * 2) == 0
    assert await h.emails() == []
    states = {
        await h.scheduler.state(k) for k in await _watch_keys(h.pool, [p.notification_id for p in pushes])
    }
    assert states == {"cancelled"}


async def test_a_receipt_that_overtakes_the_push_outcome_still_prevents_escalation(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, f"{user}@example.com")
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(Receipt(push.notification_id, user, ReceiptStatus.DELIVERED, at=h.clock.now()))
    await h.feed(outcome_of(push, OutcomeStatus.SENT, at=h.clock.now()))
    await h.advance(DELAY * 2)
    assert await h.emails() == []


def _foreign_count() -> float:
    return REGISTRY.get_sample_value("herald_receipts_foreign_total") or 0.0


async def test_a_receipt_posted_by_another_user_changes_nothing(h: Harness) -> None:
    # POST /v1/receipts takes any notification id from any user token (ids are computable):
    # mallory's receipt for alice's push must not stop alice's escalation, before or after the
    # push's sent outcome; alice's own receipt still does.
    alice, mallory = _user(), _user()
    await h.add_recipient(alice, f"{alice}@example.com")
    before = _foreign_count()
    after_sent = await _push_sent(h, alice)
    early = channel_message(alice, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    own = await _push_sent(h, alice)

    def receipt(push: ChannelMessage, user: str) -> Receipt:
        return Receipt(
            push.notification_id,
            user,
            ReceiptStatus.DELIVERED,
            at=h.clock.now(),
            channel=Channel.PUSH,
            source="api",
        )

    assert await h.feed(receipt(after_sent, mallory)) == []  # dropped at once: no row, no outcome
    await h.feed(receipt(early, mallory))  # nothing known yet: kept until the sent outcome comes
    await h.feed(outcome_of(early, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    await h.feed(receipt(own, alice))
    assert _foreign_count() - before == 2
    forged = [after_sent.notification_id, early.notification_id]
    assert (
        await h.pool.fetchval("SELECT count(*) FROM herald_receipts WHERE notification_id = ANY($1)", forged)
        == 0
    )
    assert await h.advance(DELAY) == 2
    emails = [e for e in await h.emails() if e.user_id == alice]
    assert sorted(e.notification_id for e in emails) == sorted(forged)
    delivered = [o for o in await h.outcomes() if o.status is OutcomeStatus.DELIVERED and o.user_id == alice]
    assert [o.notification_id for o in delivered] == [own.notification_id]


async def test_the_owners_early_receipt_counts_beside_another_users(h: Harness) -> None:
    # Both overtake the push's sent outcome: mallory's (ids are computable) first, then alice's
    # own. Kept under (notification, status) alone, alice's was refused as a duplicate and
    # mallory's dropped at the sent outcome: an escalation after a delivered push.
    alice, mallory = _user(), _user()
    await h.add_recipient(alice, f"{alice}@example.com")
    before = _foreign_count()
    push = channel_message(alice, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    for user in (mallory, alice):
        receipt = Receipt(
            push.notification_id,
            user,
            ReceiptStatus.DELIVERED,
            at=h.clock.now(),
            channel=Channel.PUSH,
            source="api",
        )
        assert await h.feed(receipt) == []
    await h.feed(outcome_of(push, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    assert _foreign_count() - before == 1
    waiting = "SELECT count(*) FROM herald_early_receipts WHERE notification_id = $1"
    assert await h.pool.fetchval(waiting, push.notification_id) == 0
    kept = await h.pool.fetch(
        "SELECT user_id FROM herald_receipts WHERE notification_id = $1", push.notification_id
    )
    assert [r["user_id"] for r in kept] == [alice]
    delivered = [o for o in await h.outcomes() if o.status is OutcomeStatus.DELIVERED and o.user_id == alice]
    assert [o.notification_id for o in delivered] == [push.notification_id]
    assert await h.advance(DELAY) == 0
    assert [e for e in await h.emails() if e.user_id == alice] == []


async def test_a_receipt_of_the_same_user_id_in_another_tenant_changes_nothing(h: Harness) -> None:
    # bob of globex (his token's tenant) posts receipts for acme's bob's pushes, one after its sent
    # outcome and one before: the user ids match, the tenants do not. acme's bob's own early
    # receipt for a third push still counts.
    bob = _user()
    await h.add_recipient(bob, f"{bob}@acme.example", tenant="acme")
    before = _foreign_count()

    def push() -> ChannelMessage:
        return channel_message(bob, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now(), tenant="acme")

    def receipt(message: ChannelMessage, tenant: str) -> Receipt:
        return Receipt(
            message.notification_id,
            bob,
            ReceiptStatus.DELIVERED,
            at=h.clock.now(),
            channel=Channel.PUSH,
            source="api",
            tenant=tenant,
        )

    sent, early, own = push(), push(), push()
    await h.feed(outcome_of(sent, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    assert await h.feed(receipt(sent, "globex")) == []
    await h.feed(receipt(early, "globex"))
    await h.feed(receipt(own, "acme"))
    for message in (early, own):
        await h.feed(outcome_of(message, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    assert _foreign_count() - before == 2
    assert await h.advance(DELAY) == 2
    emails = [e for e in await h.emails() if e.user_id == bob]
    assert sorted(e.notification_id for e in emails) == sorted([sent.notification_id, early.notification_id])
    delivered = [o for o in await h.outcomes() if o.status is OutcomeStatus.DELIVERED and o.user_id == bob]
    assert [o.notification_id for o in delivered] == [own.notification_id]


async def test_a_receipt_after_the_timer_was_taken_is_checked_again_at_fire_time(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, f"{user}@example.com")
    push = await _push_sent(h, user)
    # The receipt row lands but the cancel misses (as when the poller already holds the row).
    await h.pool.execute(
        "INSERT INTO herald_receipts (notification_id, status, user_id, at) VALUES ($1, 'read', $2, $3)",
        push.notification_id,
        user,
        h.clock.now(),
    )
    assert await h.advance(DELAY) == 1
    assert await h.emails() == []


async def test_unregistered_push_escalates_at_once(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, f"{user}@example.com")
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(
        outcome_of(
            push,
            OutcomeStatus.FAILED_PERMANENT,
            at=h.clock.now(),
            error_code="UNREGISTERED",
            reason="unregistered",
            provider="fcm",
        )
    )
    assert await h.release() == 1  # due now: no clock movement needed
    emails = await h.emails()
    assert [e.idempotency_key for e in emails] == [escalation_email_key(push.idempotency_key)]
    escalated = [o for o in await h.outcomes() if o.status == OutcomeStatus.ESCALATED]
    assert [o.reason for o in escalated] == ["push_failed:unregistered"]


async def test_timeout_and_failure_of_one_push_escalate_once(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, f"{user}@example.com")
    push = await _push_sent(h, user)
    await h.feed(outcome_of(push, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now(), reason="no_device"))
    await h.advance(DELAY * 2)
    assert len(await h.emails()) == 1


async def test_no_email_address_is_a_suppressed_outcome(h: Harness) -> None:
    user = _user()
    await h.add_recipient(user, None)
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(outcome_of(push, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now(), reason="no_device"))
    await h.release()
    assert await h.emails() == []
    suppressed = [o for o in await h.outcomes() if o.status == OutcomeStatus.SUPPRESSED]
    assert [(o.reason, o.channel, o.notification_id) for o in suppressed] == [
        ("no_address", Channel.EMAIL, push.notification_id)
    ]


def _escalation_timer(notification_id: str) -> str:
    """The high preset's escalate step (step 2: send, wait, escalate) on the workflow executor."""
    return step_timer(notification_id, 2, past_clock().now(), None).key


async def _watch_keys(pool: asyncpg.Pool, ids: list[str]) -> list[str]:
    return [_escalation_timer(i) for i in ids]


async def test_through_kafka_with_a_shortened_delay(stack: DevStack, pg_pool: asyncpg.Pool) -> None:
    """The real runner over herald.outcomes + herald.receipts and a real-clock poller: 1.5 s delay."""
    settings = make_settings(
        stack,
        fallback=FallbackSettings(high_escalation_delay_s=1.5),
        scheduler=SchedulerSettings(poll_interval_s=0.05),
    )
    topics = Topics(settings.topic_prefix)
    clock = SystemClock()
    producer = make_producer(settings)
    await producer.start()
    h = Harness(settings, pg_pool, producer, past_clock())
    await h.setup()
    scheduler = Scheduler(pg_pool, clock, namespace=settings.topic_prefix)
    ctx = FallbackContext(
        scheduler=scheduler, topics=topics, codec=default_codec(), settings=settings.fallback, clock=clock
    )
    runner = Runner(
        FallbackHandler(ctx, pg_pool),
        topics=[topics.outcomes, topics.receipts],
        group_id=f"{settings.topic_prefix}-fallback",
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=settings.runtime,
    )
    poller = TimerPoller(scheduler, producer, settings.scheduler, handlers=fire_handlers(ctx))
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(poller.run(stopping))]
    try:
        users = [_user() for _ in range(3)]
        for u in users:
            await h.add_recipient(u, f"{u}@example.com")
        now = clock.now()
        silent, confirmed, dead = (
            channel_message(u, Channel.PUSH, Tier.HIGH, occurred_at=now) for u in users
        )
        codec = default_codec()
        await produce_raw(
            settings,
            topics.receipts,
            [
                (
                    confirmed.notification_id.encode(),
                    codec.encode(
                        Receipt(confirmed.notification_id, confirmed.user_id, ReceiptStatus.DELIVERED, at=now)
                    ),
                )
            ],
        )
        await produce_raw(
            settings,
            topics.outcomes,
            [
                (m.notification_id.encode(), codec.encode(o))
                for m, o in [
                    (silent, outcome_of(silent, OutcomeStatus.SENT, at=now)),
                    (confirmed, outcome_of(confirmed, OutcomeStatus.SENT, at=now)),
                    (
                        dead,
                        outcome_of(
                            dead,
                            OutcomeStatus.FAILED_PERMANENT,
                            at=now,
                            error_code="UNREGISTERED",
                            reason="unregistered",
                        ),
                    ),
                ]
            ],
        )
        first = await wait_for_records(settings, h.email_topic, 1, timeout=30)
        assert codec.decode(first[0].value, ChannelMessage).user_id == dead.user_id  # at once: first
        both = await wait_for_records(settings, h.email_topic, 2, timeout=30)
        # The confirmed push never escalates: once the runner has consumed the receipt and the outcomes,
        # its timeout timer is cancelled or was never armed (a pending one would fire at the deadline),
        # and nothing more reaches the email topic.
        await wait_until_consumed(
            settings, f"{settings.topic_prefix}-fallback", [topics.outcomes, topics.receipts]
        )
        confirmed_timer = _escalation_timer(confirmed.notification_id)

        async def confirmed_settled() -> bool:
            return await scheduler.state(confirmed_timer) != "pending"

        await until(confirmed_settled, what=f"timer {confirmed_timer} no longer pending")
        await wait_until_quiet(settings, [h.email_topic])
        records = await read_all(settings, h.email_topic)
        assert len(records) == 2 and both[1].value in [r.value for r in records]
        assert {codec.decode(r.value, ChannelMessage).user_id for r in records} == {
            silent.user_id,
            dead.user_id,
        }
        elapsed = clock.now() - now
        assert elapsed >= timedelta(seconds=1.5)
    finally:
        runner.stop()
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        await producer.stop()
