"""A batch's cancellation marks and ledger entries read in one MGET (consumers/channel/redis_reads.py),
against the test stack's own Redis: each still answers as it did alone, and Redis down still
fails both open, each counted."""

from __future__ import annotations

import uuid

import redis.asyncio as redis_asyncio

from consumers.channel.cancelled import CancelCheck
from consumers.channel.redis_reads import read_marks
from consumers.infra.settings import HeraldSettings
from consumers.runtime import metrics
from consumers.workflow.cancel import cancelled_notification
from schemas.models import OutcomeStatus
from tests.integration.test_channel_consumer import (
    ScriptedProvider,
    incoming,
    make_consumer,
    message,
    outcomes,
)


async def _mget_calls(client: redis_asyncio.Redis) -> int:
    stats = await client.info("commandstats")  # the test session's own server
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_a_cancellation_and_a_ledger_entry_in_one_batch_cost_one_mget(settings: HeraldSettings) -> None:
    run = uuid.uuid4().hex[:8]
    cancelled, done, fresh = (message(f"rr-{run}-{i}") for i in range(3))
    provider = ScriptedProvider()
    consumer = make_consumer(settings, provider)
    assert consumer.ledger is not None and consumer.cancel_check is not None
    client = consumer.ledger.client
    await client.set(
        cancelled_notification(consumer.cancel_check.prefix, cancelled.notification_id), "1", ex=60
    )
    assert await consumer.ledger.claim(done.idempotency_key, None)
    await consumer.ledger.done(done.idempotency_key, "pm-earlier")
    before = await _mget_calls(client)
    got = outcomes(await consumer.handle(incoming([cancelled, done, fresh])))
    assert await _mget_calls(client) == before + 1  # not one for the marks and one for the ledger
    assert [(o.status, o.reason) for o in got][:1] == [(OutcomeStatus.CANCELLED, "cancel_key")]
    assert got[1].status is OutcomeStatus.SENT and got[1].provider_message_id == "pm-earlier"
    assert got[2].status is OutcomeStatus.SENT
    assert [c[0] for c in provider.calls] == [fresh.user_id]  # only the fresh one reached the provider
    await client.aclose()


async def test_on_different_clients_each_reads_on_its_own(settings: HeraldSettings) -> None:
    run = uuid.uuid4().hex[:8]
    m = message(f"rr-{run}")
    consumer = make_consumer(settings, ScriptedProvider())
    assert consumer.ledger is not None
    other = redis_asyncio.Redis.from_url(settings.redis_url.get_secret_value())
    check = CancelCheck(other, consumer=consumer.name, prefix=f"{settings.topic_prefix}:cancel")
    await other.set(cancelled_notification(check.prefix, m.notification_id), "1", ex=60)
    assert await consumer.ledger.claim(m.idempotency_key, None)
    cancelled, entries = await read_marks(check, consumer.ledger, [m.notification_id], [m.idempotency_key])
    assert cancelled == {m.notification_id} and entries[m.idempotency_key].owner == consumer.ledger.owner
    assert await read_marks(None, None, [m.notification_id], [m.idempotency_key]) == (set(), {})
    await other.aclose()
    await consumer.ledger.client.aclose()


async def test_redis_down_fails_both_open_and_each_counts_it(settings: HeraldSettings) -> None:
    m = message("rr-noredis")
    consumer = make_consumer(settings, ScriptedProvider(), redis_url="redis://127.0.0.1:1/0")
    counter = metrics.DEPENDENCY_ERRORS.labels("redis", consumer.name)
    before = counter._value.get()
    cancelled, entries = await read_marks(
        consumer.cancel_check, consumer.ledger, [m.notification_id], [m.idempotency_key]
    )
    assert (cancelled, entries) == (set(), {})
    assert counter._value.get() == before + 2  # as the two calls counted when they were two
