"""Receipts become delivered/read outcomes on herald.outcomes, keyed like every outcome."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from consumers.infra.keys import outcome_id
from consumers.infra.settings import HeraldSettings
from schemas.models import Channel, DeliveryOutcome, OutcomeStatus, Receipt, ReceiptStatus, Tier
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, running_harness
from tests.kafka_helpers import read_all


@pytest_asyncio.fixture(loop_scope="session")
async def h(settings: HeraldSettings, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    async with running_harness(settings, pg_pool) as harness:
        yield harness


def _user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def _from_receipts(h: Harness, notification: str) -> list[DeliveryOutcome]:
    out = []
    for r in await read_all(h.settings, h.topics.outcomes):
        o = h.ctx.codec.decode(r.value, DeliveryOutcome)
        if o.notification_id == notification and o.status in (OutcomeStatus.DELIVERED, OutcomeStatus.READ):
            assert r.key == notification.encode()  # keyed as every outcome
            out.append(o)
    return out


def _receipt(
    notification: str, user: str, status: ReceiptStatus, channel: Channel | None, h: Harness
) -> Receipt:
    return Receipt(notification, user, status, at=h.clock.now(), channel=channel, source="api")


async def test_a_push_receipt_becomes_a_delivered_then_read_outcome_of_that_push(h: Harness) -> None:
    user = _user()
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.feed(outcome_of(push, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    await h.feed(_receipt(push.notification_id, user, ReceiptStatus.DELIVERED, Channel.PUSH, h))
    await h.feed(_receipt(push.notification_id, user, ReceiptStatus.OPENED, Channel.PUSH, h))
    await h.feed(_receipt(push.notification_id, user, ReceiptStatus.DELIVERED, Channel.PUSH, h))  # replayed
    got = await _from_receipts(h, push.notification_id)
    assert {(o.status, o.channel, o.idempotency_key, o.outcome_id) for o in got} == {
        (
            OutcomeStatus.DELIVERED,
            Channel.PUSH,
            push.idempotency_key,
            outcome_id(push.idempotency_key, "delivered"),
        ),
        (OutcomeStatus.READ, Channel.PUSH, push.idempotency_key, outcome_id(push.idempotency_key, "read")),
    }
    assert all(o.message == push and o.event_id == push.event_id and o.tier is Tier.HIGH for o in got)


async def test_a_receipt_before_its_sent_outcome_still_makes_one(h: Harness) -> None:
    user = _user()
    item = channel_message(user, Channel.IN_APP, Tier.MEDIUM, occurred_at=h.clock.now())
    await h.feed(
        _receipt(item.notification_id, user, ReceiptStatus.READ, Channel.IN_APP, h)
    )  # the inbox's read
    assert await _from_receipts(h, item.notification_id) == []
    await h.feed(outcome_of(item, OutcomeStatus.SENT, at=h.clock.now()))
    (read,) = await _from_receipts(h, item.notification_id)
    assert (read.status, read.channel, read.reason) == (OutcomeStatus.READ, Channel.IN_APP, "receipt:read")


async def test_a_receipt_names_its_channel_and_only_that_message_gets_the_outcome(h: Harness) -> None:
    user = _user()
    push = channel_message(user, Channel.PUSH, Tier.CRITICAL, occurred_at=h.clock.now())
    email = channel_message(
        user, Channel.EMAIL, Tier.CRITICAL, occurred_at=h.clock.now(), recipient="x@example.com"
    )
    email.notification_id = push.notification_id
    await h.feed(
        outcome_of(push, OutcomeStatus.SENT, at=h.clock.now()),
        outcome_of(email, OutcomeStatus.SENT, at=h.clock.now()),
    )
    await h.feed(_receipt(push.notification_id, user, ReceiptStatus.DELIVERED, Channel.PUSH, h))
    (delivered,) = await _from_receipts(h, push.notification_id)
    assert (delivered.channel, delivered.idempotency_key) == (Channel.PUSH, push.idempotency_key)


async def test_a_batch_of_outcomes_and_receipts_answers_as_one_by_one_would(h: Harness) -> None:
    # The sent outcomes of a batch are remembered together, each run between receipts before the
    # run is handled: the outputs are those of handling the records one by one, in order.
    user = _user()
    a, b, c = (
        channel_message(user, channel, Tier.MEDIUM, occurred_at=h.clock.now(), recipient="x@example.com")
        for channel in (Channel.PUSH, Channel.EMAIL, Channel.IN_APP)
    )
    await h.feed(
        _receipt(a.notification_id, user, ReceiptStatus.DELIVERED, None, h),  # any channel
        _receipt(b.notification_id, user, ReceiptStatus.DELIVERED, Channel.PUSH, h),  # not b's
    )
    outputs = await h.feed(
        outcome_of(a, OutcomeStatus.SENT, at=h.clock.now()),
        outcome_of(b, OutcomeStatus.SENT, at=h.clock.now()),
        _receipt(c.notification_id, user, ReceiptStatus.READ, Channel.IN_APP, h),  # before c's sent
        outcome_of(c, OutcomeStatus.SENT, at=h.clock.now()),
        outcome_of(a, OutcomeStatus.SENT, at=h.clock.now()),  # a replay
    )
    got = [h.ctx.codec.decode(o.value, DeliveryOutcome) for o in outputs]
    assert [(o.notification_id, o.status, o.outcome_id) for o in got] == [
        (a.notification_id, OutcomeStatus.DELIVERED, outcome_id(a.idempotency_key, "delivered")),
        (c.notification_id, OutcomeStatus.READ, outcome_id(c.idempotency_key, "read")),
        (a.notification_id, OutcomeStatus.DELIVERED, outcome_id(a.idempotency_key, "delivered")),
    ]
    rows = await h.pool.fetch(
        "SELECT idempotency_key FROM herald_sent WHERE notification_id = ANY($1::text[])",
        [a.notification_id, b.notification_id, c.notification_id],
    )
    assert {r["idempotency_key"] for r in rows} == {a.idempotency_key, b.idempotency_key, c.idempotency_key}
