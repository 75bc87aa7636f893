"""Webhooks through the generic channel consumer, the retry planner, the scheduler and replay.

Real Kafka (the retries travel through the channel topic), PostgreSQL (endpoints, timers,
pending messages), Redis (delivery ledger) and a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
import redis.asyncio as redis_asyncio

from channels.webhook.endpoints_pg import EndpointStore
from channels.webhook.http import WebhookAdapter
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.ledger import DeliveryLedger
from consumers.cli import endpoints as endpoints_cli
from consumers.fallback.context import FallbackContext
from consumers.fallback.process import fire_handlers
from consumers.infra.clock import SystemClock
from consumers.infra.settings import ChannelConsumerSettings, HeraldSettings, SchedulerSettings
from consumers.runtime.handling import Incoming, Output
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from consumers.scheduler.retries import KIND_RETRY, plan_retry
from consumers.scheduler.store import Scheduler, TimerPoller
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, utcnow
from tests.fakes.webhook_receiver import Behaviour, WebhookReceiver, running_receiver
from tests.integration.webhook_helpers import adapter, endpoint, webhook_message
from tests.kafka_helpers import wait_for_records

CODEC = default_codec()


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as r:
        yield r


def consumer(settings: HeraldSettings, a: WebhookAdapter, **channel: object) -> ChannelConsumer:
    cfg = ChannelConsumerSettings(**{"concurrency": 64, "inprocess_retries": 0, **channel})
    c = ChannelConsumer(
        channel=Channel.WEBHOOK,
        lane=Lane.PRIORITY,
        adapter=a,
        topics=Topics(settings.topic_prefix),
        settings=cfg,
    )
    c.ledger = DeliveryLedger(
        redis_asyncio.Redis.from_url(settings.redis_url.get_secret_value()),
        ttl_s=600,
        namespace=f"{settings.topic_prefix}:delivery",
        consumer=c.name,
    )
    return c


async def handle_one(c: ChannelConsumer, message: ChannelMessage) -> DeliveryOutcome:
    (result,) = await c.handle([Incoming("t", 0, 0, message.recipient.encode(), message, (), 0)])
    assert isinstance(result, list)
    (out,) = result
    assert isinstance(out, Output)
    return CODEC.decode(out.value, DeliveryOutcome)


async def test_fails_three_times_then_succeeds_with_one_webhook_id(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    topics = Topics(settings.topic_prefix)
    topic = topics.channel(Channel.WEBHOOK, Lane.PRIORITY)
    await create_topics(settings, [topic])
    ep = await endpoint(pg_pool, receiver, Behaviour(fail_first=3, fail_status=503))
    a = adapter(pg_pool)
    c = consumer(settings, a)
    producer = make_producer(settings)
    await producer.start()
    scheduler = Scheduler(pg_pool, namespace=settings.topic_prefix)
    # Retry timers are fired by the fallback consumer, through the consent check.
    ctx = FallbackContext(scheduler, topics, CODEC, settings.fallback, SystemClock())
    handlers = {KIND_RETRY: fire_handlers(ctx)[KIND_RETRY]}
    poller = TimerPoller(scheduler, producer, SchedulerSettings(poll_interval_s=0.02), handlers=handlers)
    schedule = {"webhook": [0.05, 0.05, 0.05, 0.05, 0.05]}  # the production schedule, shortened
    try:
        message = webhook_message(ep.endpoint_id)
        statuses, attempts = [], []
        for round_ in range(6):
            outcome = await handle_one(c, message)
            statuses.append(outcome.status)
            attempts.append(outcome.attempt)
            if outcome.status is not OutcomeStatus.FAILED_RETRYABLE:
                break
            timer = plan_retry(
                outcome, schedule, jitter=0.2, now=utcnow(), rand=random.random(), topics=topics, codec=CODEC
            )
            assert timer is not None
            await poller.scheduler.arm([timer])
            deadline = time.monotonic() + 10
            while await poller.scheduler.state(timer.key) != "fired":  # the poller releases it when due
                assert time.monotonic() < deadline, "retry timer never fired"
                await poller.release_due()
                await asyncio.sleep(0.02)
            records = await wait_for_records(settings, topic, round_ + 1)  # the retry, via Kafka
            assert records[-1].key == ep.endpoint_id.encode()
            message = CODEC.decode(records[-1].value, ChannelMessage)
    finally:
        await producer.stop()
        await a.close()
    assert statuses == [OutcomeStatus.FAILED_RETRYABLE] * 3 + [OutcomeStatus.SENT]
    assert attempts == [1, 2, 3, 4]
    deliveries = receiver.for_path(f"/hooks/{ep.endpoint_id}")
    assert len(deliveries) == 4
    assert {d.webhook_id for d in deliveries} == {message.idempotency_key}
    assert all(d.verified_ours and d.verified_theirs for d in deliveries)
    assert [d.status for d in deliveries] == [503, 503, 503, 200]
    assert len([d for d in deliveries if d.accepted]) == 1
    # a replay of the last record (e.g. a consumer crash before its commit) is acknowledged from the ledger, not re-sent
    c2 = consumer(settings, adapter(pg_pool))
    try:
        again = await handle_one(c2, message)
    finally:
        await c2.adapter.close()
    assert again.status is OutcomeStatus.SENT and len(receiver.for_path(f"/hooks/{ep.endpoint_id}")) == 4


async def test_slow_endpoint_does_not_hold_up_others_on_the_partition(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    slow = await endpoint(pg_pool, receiver, Behaviour(delay_s=1.5))
    fast = [await endpoint(pg_pool, receiver) for _ in range(10)]
    a = adapter(pg_pool)
    c = consumer(settings, a)
    # one partition: the slow endpoint's messages first, then 10 other endpoints' messages
    batch = [webhook_message(slow.endpoint_id) for _ in range(2)]
    batch += [webhook_message(ep.endpoint_id) for ep in fast for _ in range(3)]
    incoming = [Incoming("t", 0, i, m.recipient.encode(), m, (), 0) for i, m in enumerate(batch)]
    started = time.monotonic()
    try:
        results = await c.handle(incoming)
    finally:
        await a.close()
    assert all(isinstance(r, list) for r in results)
    fast_done = [d.at - started for ep in fast for d in receiver.for_path(f"/hooks/{ep.endpoint_id}")]
    slow_done = [d.at - started for d in receiver.for_path(f"/hooks/{slow.endpoint_id}")]
    assert len(fast_done) == 30
    assert all(d.accepted for ep in fast for d in receiver.for_path(f"/hooks/{ep.endpoint_id}"))
    assert max(fast_done) < 1.0, f"other endpoints waited for the slow one: {max(fast_done):.2f}s"
    assert len(slow_done) == 2 and slow_done[1] - slow_done[0] >= 1.4  # one key stays in order


async def test_disabled_endpoint_keeps_messages_and_replay_resends_them(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    topics = Topics(settings.topic_prefix)
    topic = topics.channel(Channel.WEBHOOK, Lane.PRIORITY)
    ep = await endpoint(pg_pool, receiver, Behaviour(status=410))
    a = adapter(pg_pool)
    c = consumer(settings, a)
    try:
        gone = await handle_one(c, webhook_message(ep.endpoint_id))
        kept = [await handle_one(c, webhook_message(ep.endpoint_id)) for _ in range(2)]
    finally:
        await a.close()
    assert gone.reason == "endpoint_gone" and {o.reason for o in kept} == {"endpoint_disabled"}
    assert len(receiver.for_path(f"/hooks/{ep.endpoint_id}")) == 1
    # the receiver is fixed; the operator enables the endpoint and replays the last hour
    receiver.endpoints[f"/hooks/{ep.endpoint_id}"][1].status = 200
    args = argparse.Namespace(endpoint_id=ep.endpoint_id, since="1h", dry_run=False)
    assert await endpoints_cli.enable(settings, args) == 0
    assert await endpoints_cli.replay(settings, args) == 0
    records = await wait_for_records(settings, topic, 3)
    replayed = [CODEC.decode(r.value, ChannelMessage) for r in records]
    assert {m.idempotency_key for m in replayed} == {gone.idempotency_key} | {o.idempotency_key for o in kept}
    assert {m.attempt for m in replayed} == {1} and {r.key for r in records} == {ep.endpoint_id.encode()}
    b = adapter(pg_pool)
    c2 = consumer(settings, b)
    try:
        resent = [await handle_one(c2, m) for m in replayed]
    finally:
        await b.close()
    assert {o.status for o in resent} == {OutcomeStatus.SENT}
    accepted = [d for d in receiver.for_path(f"/hooks/{ep.endpoint_id}") if d.accepted]
    assert {d.webhook_id for d in accepted} == {m.idempotency_key for m in replayed}
    assert await EndpointStore(pg_pool).pending(ep.endpoint_id, since=utcnow().replace(year=2000)) == []
