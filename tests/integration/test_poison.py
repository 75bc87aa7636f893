"""The poison net, per consumer, against the real broker, PostgreSQL and Redis.

A record the handler always fails on with ``DependencyUnavailable`` (a data error classified as
an outage, the way ``CharacterNotInRepertoireError`` once was) sits at offset 100 of 1,001. The
runtime must split the batch of 500 until that record stands alone, dead-letter it with reason
``poison`` and its last error, and deliver the 1,000 others, within a bounded time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import asyncpg
import pytest

from channels.storage_errors import classify_pg_error
from consumers.classifier.lookup import LookupRejected, fetch_profiles
from consumers.classifier.process import build_classifier
from consumers.emitter import build_event
from consumers.fanout.copies import copy_id
from consumers.fanout.handler import Fanout
from consumers.infra.clock import ManualClock, SystemClock
from consumers.infra.resources import Resources
from consumers.infra.settings import ClassifierSettings, HeraldSettings
from consumers.ledger.sink import LedgerSink
from consumers.ledger.store import ActivityWriter
from consumers.runtime.handling import Handler, Incoming, Result
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics, dlq
from schemas.codec import default_codec
from schemas.errors import DependencyUnavailable
from schemas.models import Channel, ChannelMessage, DomainEvent, Lane, OutcomeStatus, Receipt, ReceiptStatus
from tests.conftest import make_settings
from tests.integration.fallback_harness import running_harness
from tests.integration.test_channel_consumer import ScriptedProvider, make_consumer, message
from tests.kafka_helpers import committed_offsets, produce_raw, read_all
from tests.ledger_helpers import message as ledger_message
from tests.ledger_helpers import outcome

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")
GOOD = 1000
POISON_AT = 100
ISOLATE_WITHIN_S = 15.0  # generous on 2 shared cores; measured ~1 s


class AlwaysFailsOn(Generic[T]):
    """A real consumer, except that any batch holding the chosen record fails as an outage would."""

    def __init__(self, inner: Handler[T], is_poison: Callable[[T], bool]) -> None:
        self.inner = inner
        self.name = inner.name
        self.is_poison = is_poison
        self.probe: Callable[[], Awaitable[bool]] | None = getattr(inner, "probe", None)
        self.first_failure: float | None = None  # time.monotonic() of the first failed batch

    def decode(self, raw: bytes) -> T:
        return self.inner.decode(raw)

    async def handle(self, batch: Sequence[Incoming[T]]) -> Sequence[Result]:
        if any(self.is_poison(item.value) for item in batch):
            if self.first_failure is None:
                self.first_failure = time.monotonic()
            raise DependencyUnavailable(
                "CharacterNotInRepertoireError: invalid byte sequence (misread as outage)"
            )
        return await self.inner.handle(batch)


async def _isolate_and_deliver(
    settings: HeraldSettings, handler: AlwaysFailsOn[Any], source: str, records: list[tuple[bytes, bytes]]
) -> tuple[float, float, Any]:
    """Run ``handler`` over ``records`` (offset 100 the poison); (seconds from the first failure to
    the dead letter acknowledged, seconds from start to everything committed, the dead letter)."""
    await produce_raw(settings, source, records)
    producer = make_producer(settings)
    await producer.start()
    group = f"{settings.topic_prefix}-{handler.name}"
    runner: Runner[Any] = Runner(
        handler,
        topics=[source],
        group_id=group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=settings.runtime.model_copy(update={"max_batch": 500, "handler_retry_base_s": 0.05}),
    )
    started = time.monotonic()
    task = asyncio.create_task(runner.run())
    isolated: float | None = None
    done = float("nan")
    try:
        while time.monotonic() - started < 120:
            if isolated is None and handler.first_failure and await read_all(settings, dlq(source)):
                isolated = time.monotonic() - handler.first_failure
            if sum((await committed_offsets(settings, group, source)).values()) >= len(records):
                done = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()
    dead = await read_all(settings, dlq(source))
    assert len(dead) == 1, [dict(d.headers) for d in dead]
    assert isolated is not None
    print(f"\n{handler.name}: poison isolated {isolated:.2f}s after the first failure; all at {done:.2f}s")
    return isolated, done, dead[0]


def _check_letter(dead: Any, poison_value: bytes, isolated: float) -> None:
    headers = dict(dead.headers)
    assert dead.value == poison_value
    assert headers["herald-dlq-reason"] == b"poison"
    assert headers["herald-dlq-error-class"] == b"DependencyUnavailable"
    assert b"CharacterNotInRepertoireError" in headers["herald-dlq-detail"]
    assert headers["herald-source-offset"] == str(POISON_AT).encode()
    assert isolated < ISOLATE_WITHIN_S


def _classifier_settings(stack: Any) -> HeraldSettings:
    s = make_settings(stack, partitions=1)
    return make_settings(
        stack,
        topic_prefix=s.topic_prefix,
        partitions=1,
        classifier=ClassifierSettings(rate_limit_prefix=f"rl-{s.topic_prefix}"),
    )


async def test_classifier_isolates_a_poison_event_and_delivers_the_next_thousand(stack: Any) -> None:
    settings = _classifier_settings(stack)
    topics = Topics(settings.topic_prefix)
    in_app = topics.channel(Channel.IN_APP, Lane.PRIORITY)
    await create_topics(
        settings, [topics.events, dlq(topics.events), *topics.channel_topics(), topics.outcomes], partitions=1
    )
    codec = default_codec()
    events = [
        build_event("comment_reply", user_id=f"{settings.topic_prefix}-u{i}", data={"i": i})
        for i in range(GOOD + 1)
    ]
    poison_id = events[POISON_AT].event_id
    records = [(e.user_id.encode(), codec.encode(e)) for e in events]
    res = Resources(settings, clock=ManualClock(datetime.now(UTC)))
    try:
        inner = await build_classifier(res)
        handler: AlwaysFailsOn[DomainEvent] = AlwaysFailsOn(inner, lambda e: e.event_id == poison_id)
        isolated, _, dead = await _isolate_and_deliver(settings, handler, topics.events, records)
    finally:
        await res.close()
    _check_letter(dead, records[POISON_AT][1], isolated)
    delivered = {codec.decode(r.value, ChannelMessage).event_id for r in await read_all(settings, in_app)}
    assert delivered == {e.event_id for e in events} - {poison_id}


async def test_channel_consumer_isolates_a_poison_message_and_delivers_the_next_thousand(
    settings: HeraldSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    source = topics.channel(Channel.SMS, Lane.PRIORITY)
    await create_topics(settings, [source, dlq(source), topics.outcomes], partitions=1)
    adapter = ScriptedProvider()
    consumer = make_consumer(settings, adapter)
    messages = [message(f"u{i}") for i in range(GOOD + 1)]
    poison_key = messages[POISON_AT].idempotency_key
    codec = default_codec()
    records = [(m.user_id.encode(), codec.encode(m)) for m in messages]
    handler: AlwaysFailsOn[ChannelMessage] = AlwaysFailsOn(
        consumer, lambda m: m.idempotency_key == poison_key
    )
    try:
        isolated, _, dead = await _isolate_and_deliver(settings, handler, source, records)
    finally:
        assert consumer.ledger is not None
        await consumer.ledger.client.aclose()
    _check_letter(dead, records[POISON_AT][1], isolated)
    sent = {u for u, _, _, _ in adapter.calls}
    assert sent == {m.user_id for m in messages} - {messages[POISON_AT].user_id}
    assert len(await read_all(settings, topics.outcomes)) >= GOOD


async def test_fallback_isolates_a_poison_signal_and_handles_the_next_thousand(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.receipts, dlq(topics.receipts)], partitions=1)
    run = uuid.uuid4().hex[:10]
    receipts = [
        Receipt(notification_id=f"{run}-n{i}", user_id=f"{run}-u{i}", status=ReceiptStatus.DELIVERED)
        for i in range(GOOD + 1)
    ]
    poison_id = receipts[POISON_AT].notification_id
    codec = default_codec()
    records = [(r.notification_id.encode(), codec.encode(r)) for r in receipts]
    async with running_harness(settings, pg_pool) as harness:
        handler: AlwaysFailsOn[Any] = AlwaysFailsOn(
            harness.handler, lambda v: getattr(v, "notification_id", None) == poison_id
        )
        isolated, _, dead = await _isolate_and_deliver(settings, handler, topics.receipts, records)
    _check_letter(dead, records[POISON_AT][1], isolated)
    stored = await pg_pool.fetch(
        "SELECT notification_id FROM herald_receipts WHERE notification_id LIKE $1", f"{run}-%"
    )
    assert {r["notification_id"] for r in stored} == {r.notification_id for r in receipts} - {poison_id}


async def test_a_nul_in_a_user_id_from_a_raw_producer_is_dead_lettered_not_an_outage(stack: Any) -> None:
    """The issue's poison, for real: no wrapper, the classifier itself must not wedge."""
    settings = _classifier_settings(stack)
    topics = Topics(settings.topic_prefix)
    in_app = topics.channel(Channel.IN_APP, Lane.PRIORITY)
    await create_topics(
        settings, [topics.events, dlq(topics.events), *topics.channel_topics(), topics.outcomes], partitions=1
    )
    codec = default_codec()
    good = [build_event("comment_reply", user_id=f"{settings.topic_prefix}-u{i}") for i in range(200)]
    template = good[0]
    bad = {
        "u\x00ser": "user_id: control character",
        "": "user_id: must not be empty",
        "x" * 100_000: "user_id: 100000 characters > 256",
    }
    raw = [
        DomainEvent(event_id=f"bad-{i}", type=template.type, occurred_at=template.occurred_at, user_id=u)
        for i, u in enumerate(bad)
    ]
    records = [(e.user_id.encode(), codec.encode(e)) for e in [*good[:50], *raw, *good[50:]]]
    await produce_raw(settings, topics.events, records)
    res = Resources(settings, clock=ManualClock(datetime.now(UTC)))
    producer = make_producer(settings)
    await producer.start()
    group = f"{settings.topic_prefix}-classifier"
    try:
        runner: Runner[Any] = Runner(
            await build_classifier(res),
            topics=[topics.events],
            group_id=group,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            producer=producer,
            settings=settings.runtime,
        )
        task = asyncio.create_task(runner.run())
        for _ in range(300):
            if sum((await committed_offsets(settings, group, topics.events)).values()) >= len(records):
                break
            await asyncio.sleep(0.1)
        runner.stop()
        await asyncio.wait_for(task, 30)
    finally:
        await producer.stop()
        await res.close()
    dead = {
        dict(d.headers)["herald-dlq-detail"].decode(): dict(d.headers)
        for d in await read_all(settings, dlq(topics.events))
    }
    assert len(dead) == 3
    for prefix in bad.values():
        (headers,) = [h for detail, h in dead.items() if detail.startswith(prefix)]
        assert headers["herald-dlq-reason"] == b"invalid_event"
    assert len(await read_all(settings, in_app)) == len(good)


async def test_a_user_id_postgresql_refuses_is_a_record_error_not_an_outage(pg_pool: asyncpg.Pool) -> None:
    with pytest.raises(LookupRejected) as caught:
        await fetch_profiles(pg_pool, [("", "ok"), ("", "u\x00ser")])
    assert caught.value.reason == "invalid_event"
    assert not isinstance(caught.value, DependencyUnavailable)


async def test_a_nul_byte_really_is_refused_as_a_record_error(pg_pool: asyncpg.Pool) -> None:
    """The issue's poison, against the real server: what PostgreSQL raises is classified ``record``."""
    with pytest.raises(asyncpg.PostgresError) as caught:
        await pg_pool.fetchval("SELECT $1::text", "u\x00ser")
    assert classify_pg_error(caught.value) == "record"
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ValueError)) as dated:
        await pg_pool.fetchval("SELECT $1::timestamptz", "0001-01-01T00:00:00+14:00")
    assert classify_pg_error(dated.value) == "record"


async def test_ledger_isolates_a_poison_outcome_and_stores_the_next_thousand(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.outcomes, dlq(topics.outcomes)], partitions=1)
    run = uuid.uuid4().hex[:10]
    done = [
        outcome(ledger_message(f"{run}-e{i}", f"{run}-u{i}"), OutcomeStatus.SENT, provider="fcm")
        for i in range(GOOD + 1)
    ]
    codec = default_codec()
    records = [(o.user_id.encode(), codec.encode(o)) for o in done]
    poison_value = records[POISON_AT][1]
    sink = LedgerSink(ActivityWriter(pg_pool, retention_days=30), codec, SystemClock())
    handler: AlwaysFailsOn[bytes] = AlwaysFailsOn(sink, lambda raw: raw == poison_value)
    assert handler.probe is not None  # the ledger answers the poison net's question
    isolated, _, dead = await _isolate_and_deliver(settings, handler, topics.outcomes, records)
    _check_letter(dead, poison_value, isolated)
    stored = await pg_pool.fetch("SELECT user_id FROM herald_activity WHERE user_id LIKE $1", f"{run}-%")
    assert {r["user_id"] for r in stored} == {o.user_id for o in done} - {done[POISON_AT].user_id}


async def test_fanout_isolates_a_poison_broadcast_and_fans_out_the_next_thousand(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.events, dlq(topics.events), topics.fanout], partitions=1)
    tenant = settings.topic_prefix
    await pg_pool.execute("INSERT INTO herald_topics (tenant, key) VALUES ($1, 'news')", tenant)
    await pg_pool.execute(
        "INSERT INTO herald_topic_subscribers (tenant, topic, user_id) VALUES ($1, 'news', 'reader')", tenant
    )
    events = []
    for _ in range(GOOD + 1):
        event = build_event("marketing.weekly", user_id="-", tenant=tenant)
        event.user_id, event.topic = "", "news"
        events.append(event)
    poison_id = events[POISON_AT].event_id
    codec = default_codec()
    records = [(e.event_id.encode(), codec.encode(e)) for e in events]
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, codec, topics.fanout)
        handler: AlwaysFailsOn[DomainEvent] = AlwaysFailsOn(fanout, lambda e: e.event_id == poison_id)
        assert handler.probe is not None  # the fan-out answers the poison net's question
        isolated, _, dead = await _isolate_and_deliver(settings, handler, topics.events, records)
    finally:
        await producer.stop()
    _check_letter(dead, records[POISON_AT][1], isolated)
    copies = [codec.decode(r.value, DomainEvent) for r in await read_all(settings, topics.fanout)]
    assert {c.event_id for c in copies} == {copy_id(e.event_id, "reader") for e in events} - {
        copy_id(poison_id, "reader")
    }
