"""Topic fan-out under trouble: two replicas on one broadcast, the cursor, reused and stale event ids,
a broker refusing copies, a lock holder that dies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.devstack import DevStack
from consumers.fanout.copies import STALE_BROADCAST_AFTER
from consumers.fanout.handler import _LOCK_CLASS, _TRY_LOCK, Fanout
from consumers.runtime.handling import DeadLetter
from consumers.runtime.isolate import isolate
from consumers.runtime.kafka import make_producer
from schemas.codec import default_codec
from schemas.errors import DependencyUnavailable
from schemas.models import DomainEvent
from tests.integration.fanout_helpers import (
    broadcast_event,
    copies_on,
    fanout_stack,
    incoming,
    subscribed_topic,
)


async def test_two_fan_outs_of_one_event_at_once_send_each_copy_once(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # A fan-out longer than max.poll.interval.ms loses its partition and another replica resumes
    # the same event from the cursor while the first goes on: the second must wait, then find
    # the broadcast finished.
    settings, topics, tenant = await fanout_stack(stack)
    users = await subscribed_topic(pg_pool, tenant, "busy", 600)
    event = broadcast_event(tenant, "busy")
    producer = make_producer(settings)
    await producer.start()
    try:
        replicas = [Fanout(pg_pool, producer, default_codec(), topics.fanout, chunk=50) for _ in range(2)]
        produced = await asyncio.gather(*(f.fan_out(event) for f in replicas))
    finally:
        await producer.stop()
    assert sorted(produced) == [0, 600]
    copies = await copies_on(settings, topics.fanout)
    assert sorted(c.user_id for c in copies) == users  # each once


class _Overtaken(Fanout):
    """After its first chunk, another writer (a replica whose lock went with its connection) has
    taken the cursor further than this one will ever get."""

    async def _produce(self, event: DomainEvent, user_ids: list[str]) -> None:
        await super()._produce(event, user_ids)
        await self.pool.execute(
            "UPDATE herald_fanout_cursors SET after_user = 'zzz' WHERE event_id = $1", event.event_id
        )


async def test_the_cursor_never_moves_back(stack: DevStack, pg_pool: asyncpg.Pool) -> None:
    settings, topics, tenant = await fanout_stack(stack)
    await subscribed_topic(pg_pool, tenant, "ahead", 30)
    event = broadcast_event(tenant, "ahead")
    producer = make_producer(settings)
    await producer.start()
    try:
        assert (
            await _Overtaken(pg_pool, producer, default_codec(), topics.fanout, chunk=10).fan_out(event) == 30
        )
    finally:
        await producer.stop()
    after = await pg_pool.fetchval(
        "SELECT after_user FROM herald_fanout_cursors WHERE tenant = $1 AND event_id = $2",
        tenant,
        event.event_id,
    )
    assert after == "zzz"


async def test_an_event_id_reused_for_another_topic_is_dead_lettered(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # Once skipped in silence, as if it were a replay of the finished broadcast.
    settings, topics, tenant = await fanout_stack(stack)
    news = await subscribed_topic(pg_pool, tenant, "news", 2)
    await subscribed_topic(pg_pool, tenant, "sales", 2)
    first = broadcast_event(tenant, "news")
    reused = broadcast_event(tenant, "sales")
    reused.event_id = first.event_id
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        assert await fanout.handle([incoming(first), incoming(reused), incoming(first)]) == [
            (),
            DeadLetter(
                "invalid_event",
                "ReusedEventId",
                f"event id {first.event_id!r} was already broadcast to topic 'news' (tenant {tenant!r}); "
                "this event names topic 'sales': a broadcast needs an event id of its own",
            ),
            (),  # the same broadcast again: a replay, nothing sent
        ]
    finally:
        await producer.stop()
    assert sorted(c.user_id for c in await copies_on(settings, topics.fanout)) == news


async def test_a_broadcast_the_broker_refuses_is_an_outage_not_poison(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # PostgreSQL answered the probe while every produce failed, so the poison net dead-lettered
    # the broadcast as "poison" halfway through. Here the copies' topic is a name the broker
    # refuses (tansu creates an unknown topic on first use): each produce fails after its
    # metadata wait, as with a partition left without a leader.
    settings, topics, tenant = await fanout_stack(stack)
    users = await subscribed_topic(pg_pool, tenant, "cut", 3)
    items = [incoming(broadcast_event(tenant, "cut")) for _ in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=1000)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), f"{topics.fanout}/no such topic!")
        with pytest.raises(DependencyUnavailable) as failed:
            await fanout.handle(items)
        assert await fanout.probe() is False
        with pytest.raises(DependencyUnavailable):  # the runner pauses and replays the batch
            await isolate(fanout.handle, items, failed.value, probe=fanout.probe)
        fanout.out_topic = topics.fanout  # the broker takes copies again
        assert await fanout.handle(items) == [(), ()]
        assert await fanout.probe() is True
    finally:
        await producer.stop()
    copies = await copies_on(settings, topics.fanout)
    assert sorted(c.user_id for c in copies) == sorted(users * 2)


async def test_a_fan_out_waits_for_the_holder_and_goes_on_when_its_session_dies(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # The holder's lock is its session's: a replica that crashed mid-broadcast must not leave
    # the event locked, and one that is alive must keep the others out.
    settings, topics, tenant = await fanout_stack(stack)
    users = await subscribed_topic(pg_pool, tenant, "held", 5)
    event = broadcast_event(tenant, "held")
    holder = await asyncpg.connect(stack.env()["DATABASE_URL"])
    assert await holder.fetchval(_TRY_LOCK, _LOCK_CLASS, tenant, event.event_id)
    producer = make_producer(settings)
    await producer.start()
    try:
        waiting = asyncio.create_task(
            Fanout(pg_pool, producer, default_codec(), topics.fanout).fan_out(event)
        )
        await asyncio.sleep(1.5)
        assert not waiting.done()
        assert (
            await pg_pool.fetchval(
                "SELECT count(*) FROM herald_fanout_cursors WHERE event_id = $1", event.event_id
            )
            == 0
        )
        holder.terminate()  # the holder dies: its session, and the lock with it
        assert await asyncio.wait_for(waiting, 10) == 5
    finally:
        holder.terminate()
        await producer.stop()
    assert sorted(c.user_id for c in await copies_on(settings, topics.fanout)) == users


async def test_an_old_topic_event_without_a_cursor_is_dead_lettered_not_broadcast_again(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # The janitor deletes a finished cursor after FINISHED_FANOUT_KEEP; a replay of the topic
    # event after that (a DLQ replay, a long-retention topic, an offset reset) found no cursor and
    # sent the whole broadcast again. An old event with a cursor still resumes or replays as before.
    settings, topics, tenant = await fanout_stack(stack)
    users = await subscribed_topic(pg_pool, tenant, "digest", 3)
    pruned = broadcast_event(tenant, "digest")
    pruned.occurred_at = datetime.now(UTC) - STALE_BROADCAST_AFTER - timedelta(hours=1)
    resumed = broadcast_event(tenant, "digest")
    resumed.occurred_at = pruned.occurred_at
    await pg_pool.execute(  # started before it grew old: its cursor is its progress
        "INSERT INTO herald_fanout_cursors (event_id, tenant, topic, after_user) VALUES ($1, $2, $3, $4)",
        resumed.event_id,
        tenant,
        "digest",
        users[0],
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        results = await fanout.handle([incoming(pruned), incoming(resumed)])
    finally:
        await producer.stop()
    dead = results[0]
    assert isinstance(dead, DeadLetter)
    assert (dead.reason, dead.error_class) == ("stale_broadcast", "StaleBroadcast")
    assert "has no fan-out cursor" in dead.detail
    assert results[1] == ()
    cursors = await pg_pool.fetchval(
        "SELECT count(*) FROM herald_fanout_cursors WHERE tenant = $1 AND event_id = $2",
        tenant,
        pruned.event_id,
    )
    assert cursors == 0  # nothing left behind that a later replay would take for progress
    copies = await copies_on(settings, topics.fanout)
    assert sorted(c.user_id for c in copies) == users[1:]  # only the resumed broadcast's rest


async def test_a_copy_the_broker_refuses_for_its_size_is_dead_lettered_and_the_probe_stays_yes(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # A size refusal was taken for an outage: the probe said no and the runner replayed the same
    # refusal for ever, holding every later broadcast on the partition.
    settings, topics, tenant = await fanout_stack(stack)
    await subscribed_topic(pg_pool, tenant, "big", 2)
    small = await subscribed_topic(pg_pool, tenant, "small", 2)
    big = broadcast_event(tenant, "big")
    big.payload = '{"text": "' + "x" * 4000 + '"}'
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=2000)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        results = await fanout.handle([incoming(big), incoming(broadcast_event(tenant, "small"))])
        assert await fanout.probe() is True
    finally:
        await producer.stop()
    dead = results[0]
    assert isinstance(dead, DeadLetter)
    assert (dead.reason, dead.error_class) == ("too_large", "CopyTooLarge")
    assert results[1] == ()
    assert sorted(c.user_id for c in await copies_on(settings, topics.fanout)) == small
