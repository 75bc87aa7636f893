"""Topic fan-out: one copy per subscriber with deterministic ids, and a SIGKILL of the real
``herald run fanout`` mid-broadcast neither skips nor duplicates a subscriber."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.api.admin.recipients_pg import RecipientStore
from consumers.classifier.process import build_classifier
from consumers.devstack import DevStack
from consumers.emitter import build_event, partition_key
from consumers.fanout.copies import STALE_BROADCAST_AFTER, copy_for, copy_id
from consumers.fanout.handler import _LOCK_CLASS, _TRY_LOCK, Fanout
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import DeadLetter, Incoming
from consumers.runtime.isolate import isolate
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.errors import DependencyUnavailable
from schemas.models import DomainEvent
from tests.conftest import make_settings
from tests.kafka_helpers import produce_raw, read_all

ROOT = Path(__file__).resolve().parents[2]


async def _topic(pool: asyncpg.Pool, tenant: str, key: str, n: int) -> list[str]:
    users = [f"s{i:07d}" for i in range(n)]
    await pool.execute("INSERT INTO herald_topics (tenant, key) VALUES ($1, $2)", tenant, key)
    await pool.copy_records_to_table(
        "herald_topic_subscribers",
        records=[(tenant, key, u) for u in users],
        columns=["tenant", "topic", "user_id"],
    )
    return users


async def _fanout_stack(stack: DevStack) -> tuple[HeraldSettings, Topics, str]:
    """Settings of a private topic prefix, its fan-out topic created, and a tenant of its own."""
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.fanout])
    return settings, topics, settings.topic_prefix


def _broadcast(tenant: str | None, key: str) -> DomainEvent:
    event = build_event("marketing.weekly", user_id="-", tenant=tenant, data={"issue": 7})
    event.user_id, event.topic = "", key
    return event


async def test_copies_have_deterministic_ids_and_a_replay_sends_nothing(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings, topics, tenant = await _fanout_stack(stack)
    users = await _topic(pg_pool, tenant, "watchers", 250)
    await pg_pool.execute(  # same key in another tenant: not this broadcast's subscribers
        "INSERT INTO herald_topics (tenant, key) VALUES ($1, 'watchers')", f"{tenant}-other"
    )
    await pg_pool.execute(
        "INSERT INTO herald_topic_subscribers (tenant, topic, user_id) VALUES ($1, 'watchers', 'intruder')",
        f"{tenant}-other",
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout, chunk=100)
        event = _broadcast(tenant, "watchers")
        # A crash after a chunk's acks but before its checkpoint: that chunk goes out again, same ids.
        await fanout._produce(event, users[:100])
        assert await fanout.fan_out(event) == 250
        assert await fanout.fan_out(event) == 0  # a replayed broadcast is already done
    finally:
        await producer.stop()
    codec = default_codec()
    copies = [(r.key, codec.decode(r.value, DomainEvent)) for r in await read_all(settings, topics.fanout)]
    assert len(copies) == 350 and sorted({c.user_id for _, c in copies}) == users
    for key, c in copies:
        assert key == c.user_id.encode() and c.event_id == copy_id(event.event_id, c.user_id)
        assert c.topic == "watchers" and c.tenant == tenant and c.payload == event.payload


async def test_two_tenants_broadcasting_under_the_same_event_id_each_reach_their_subscribers(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # Tenants choose their event ids: the second tenant's broadcast must not find the first's
    # finished cursor (one per event id, before migration 250) and send nothing.
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.fanout])
    first, second = f"{settings.topic_prefix}-a", f"{settings.topic_prefix}-b"
    users_a = await _topic(pg_pool, first, "news", 3)
    users_b = await _topic(pg_pool, second, "news", 4)
    event_a = _broadcast(first, "news")
    event_b = _broadcast(second, "news")
    event_b.event_id = event_a.event_id
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout, chunk=100)
        assert await fanout.fan_out(event_a) == 3
        assert await fanout.fan_out(event_b) == 4
        assert await fanout.fan_out(event_a) == await fanout.fan_out(event_b) == 0
    finally:
        await producer.stop()
    copies = [default_codec().decode(r.value, DomainEvent) for r in await read_all(settings, topics.fanout)]
    assert sorted((c.tenant or "", c.user_id) for c in copies) == sorted(
        [(first, u) for u in users_a] + [(second, u) for u in users_b]
    )


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumers.cli.main", "run", "fanout"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _cursor(pool: asyncpg.Pool, event_id: str) -> tuple[int, bool]:
    row = await pool.fetchrow(
        "SELECT fanned, finished_at FROM herald_fanout_cursors WHERE event_id = $1", event_id
    )
    return (0, False) if row is None else (int(row["fanned"]), row["finished_at"] is not None)


async def _wait(
    pool: asyncpg.Pool,
    event_id: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    *,
    done: bool,
    at_least: int = 1,
) -> int:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        fanned, finished = await _cursor(pool, event_id)
        if finished if done else fanned >= at_least:
            return fanned
        assert proc.poll() is None, log.read_text()[-3000:]
        await asyncio.sleep(0.01)
    raise AssertionError(f"fan-out did not progress:\n{log.read_text()[-3000:]}")


async def test_sigkill_mid_broadcast_neither_skips_nor_duplicates(
    stack: DevStack, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    n, chunk = 40_000, 200
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    tenant = settings.topic_prefix
    users = await _topic(pg_pool, tenant, "all", n)
    event = _broadcast(tenant, "all")
    await produce_raw(settings, topics.events, [(partition_key(event), default_codec().encode(event))])
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_PARTITIONS": "2",
        "HERALD_METRICS_PORT": "0",
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_FANOUT_CHUNK": str(chunk),
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
    }
    log = tmp_path / "fanout.log"
    proc = _spawn(env, log)
    try:
        await _wait(pg_pool, event.event_id, proc, log, done=False, at_least=n // 4)  # well into it
        await asyncio.sleep(0.02)  # let the next chunk get under way: it is the one a kill can cut
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at, finished = await _cursor(pg_pool, event.event_id)
        assert not finished and 0 < killed_at < n, "the broadcast must be cut in the middle"
        proc = _spawn(env, log)
        await _wait(pg_pool, event.event_id, proc, log, done=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    codec = default_codec()
    copies = [codec.decode(r.value, DomainEvent) for r in await read_all(settings, topics.fanout)]
    by_user: dict[str, set[str]] = {}
    for c in copies:
        by_user.setdefault(c.user_id, set()).add(c.event_id)
    assert sorted(by_user) == users  # nobody skipped
    assert all(ids == {copy_id(event.event_id, u)} for u, ids in by_user.items())  # one id per subscriber
    resent = len(copies) - n
    assert 0 <= resent <= chunk  # at most the chunk in flight at the kill, with the same ids
    print(f"killed after {killed_at} of {n}; {resent} copies re-sent (same ids)")


async def test_copies_take_the_bulk_lane_and_the_main_classifier_leaves_broadcasts_alone(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings = make_settings(stack)
    res = Resources(settings)
    uid = f"bc-{uuid.uuid4().hex[:10]}"
    await pg_pool.execute(
        "INSERT INTO herald_recipients (user_id, email, phone) VALUES ($1, 'b@example.com', '+14155550101')",
        uid,
    )
    try:
        broadcast = _broadcast(None, "news")
        broadcast.type = "security_alert"  # critical: push + sms + email on the priority lane normally
        copy = copy_for(broadcast, uid)
        main = await build_classifier(res)
        (skipped,) = await main.handle([_incoming(broadcast)])
        assert skipped == ()  # the fan-out's job, not the classifier's
        bulk = await build_classifier(res, broadcast=True)
        (outputs,) = await bulk.handle([_incoming(copy)])
        assert not isinstance(outputs, DeadLetter)
        channel_topics = [o.topic for o in outputs if ".channel." in o.topic]
        assert channel_topics and all(t.endswith(".bulk") for t in channel_topics), channel_topics
        (direct,) = await main.handle([_incoming(copy)])  # the same event sent to the user directly
        assert not isinstance(direct, DeadLetter)
        assert all(o.topic.endswith(".priority") for o in direct if ".channel." in o.topic)
    finally:
        await res.close()


def _incoming(event: DomainEvent) -> Incoming[DomainEvent]:
    return Incoming("t", 0, 0, partition_key(event), event, (), 0)


async def test_a_topic_event_with_bad_identifiers_is_dead_lettered_naming_the_field(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    """A raw producer bypasses the emitter's check: a NUL in the topic once reached PostgreSQL,
    which refused it, and the refusal was retried as an outage forever, holding the partition."""
    settings, topics, tenant = await _fanout_stack(stack)
    users = await _topic(pg_pool, tenant, "alerts", 3)
    bad = {
        "topic: control character or lone surrogate U+0000": _broadcast(tenant, "ale\x00rts"),
        "tenant: 500 characters > 128": _broadcast(tenant, "alerts"),
        "event_id: must not be empty": _broadcast(tenant, "alerts"),
    }
    bad["tenant: 500 characters > 128"].tenant = "t" * 500
    bad["event_id: must not be empty"].event_id = " "
    good = _broadcast(tenant, "alerts")
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        assert await fanout.probe() is True  # the poison net's evidence that PostgreSQL answers
        results = await fanout.handle([_incoming(e) for e in [*bad.values(), good]])
    finally:
        await producer.stop()
    for detail, result in zip(bad, results, strict=False):
        assert isinstance(result, DeadLetter)
        assert (result.reason, result.error_class) == ("invalid_event", "InvalidIdentifier")
        assert result.detail.startswith(detail), result.detail
    assert results[-1] == ()
    copies = [default_codec().decode(r.value, DomainEvent) for r in await read_all(settings, topics.fanout)]
    assert sorted(c.user_id for c in copies) == users


async def _copies(settings: HeraldSettings, topic: str) -> list[DomainEvent]:
    return [default_codec().decode(r.value, DomainEvent) for r in await read_all(settings, topic)]


async def test_an_erased_subscriber_gets_no_copy_of_the_next_broadcast(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # Erasure once left the subscription: the next broadcast fanned a copy out to the erased id,
    # and the classifier's profile for an unknown user delivered it (inbox rows, workflow state).
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.fanout])
    tenant, other = settings.topic_prefix, f"{settings.topic_prefix}-other"
    users = await _topic(pg_pool, tenant, "news", 3)
    await _topic(pg_pool, other, "news", 3)  # the same ids in another tenant: other recipients
    erased = users[1]
    removed = await RecipientStore(pg_pool).erase(tenant, erased)
    assert removed["topic_subscriptions"] == 1
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        assert await fanout.fan_out(_broadcast(tenant, "news")) == 2
        assert await fanout.fan_out(_broadcast(other, "news")) == 3
    finally:
        await producer.stop()
    copies = await _copies(settings, topics.fanout)
    assert sorted(c.user_id for c in copies if c.tenant == tenant) == [users[0], users[2]]
    assert sorted(c.user_id for c in copies if c.tenant == other) == users


async def test_two_fan_outs_of_one_event_at_once_send_each_copy_once(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # A fan-out longer than max.poll.interval.ms loses its partition and another replica resumes
    # the same event from the cursor while the first goes on: the second must wait, then find
    # the broadcast finished.
    settings, topics, tenant = await _fanout_stack(stack)
    users = await _topic(pg_pool, tenant, "busy", 600)
    event = _broadcast(tenant, "busy")
    producer = make_producer(settings)
    await producer.start()
    try:
        replicas = [Fanout(pg_pool, producer, default_codec(), topics.fanout, chunk=50) for _ in range(2)]
        produced = await asyncio.gather(*(f.fan_out(event) for f in replicas))
    finally:
        await producer.stop()
    assert sorted(produced) == [0, 600]
    copies = await _copies(settings, topics.fanout)
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
    settings, topics, tenant = await _fanout_stack(stack)
    await _topic(pg_pool, tenant, "ahead", 30)
    event = _broadcast(tenant, "ahead")
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
    settings, topics, tenant = await _fanout_stack(stack)
    news = await _topic(pg_pool, tenant, "news", 2)
    await _topic(pg_pool, tenant, "sales", 2)
    first = _broadcast(tenant, "news")
    reused = _broadcast(tenant, "sales")
    reused.event_id = first.event_id
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        assert await fanout.handle([_incoming(first), _incoming(reused), _incoming(first)]) == [
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
    assert sorted(c.user_id for c in await _copies(settings, topics.fanout)) == news


async def test_a_broadcast_the_broker_refuses_is_an_outage_not_poison(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # PostgreSQL answered the probe while every produce failed, so the poison net dead-lettered
    # the broadcast as "poison" halfway through. Here the copies' topic is a name the broker
    # refuses (tansu creates an unknown topic on first use): each produce fails after its
    # metadata wait, as with a partition left without a leader.
    settings, topics, tenant = await _fanout_stack(stack)
    users = await _topic(pg_pool, tenant, "cut", 3)
    items = [_incoming(_broadcast(tenant, "cut")) for _ in range(2)]
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
    copies = await _copies(settings, topics.fanout)
    assert sorted(c.user_id for c in copies) == sorted(users * 2)


async def test_a_fan_out_waits_for_the_holder_and_goes_on_when_its_session_dies(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # The holder's lock is its session's: a replica that crashed mid-broadcast must not leave
    # the event locked, and one that is alive must keep the others out.
    settings, topics, tenant = await _fanout_stack(stack)
    users = await _topic(pg_pool, tenant, "held", 5)
    event = _broadcast(tenant, "held")
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
    assert sorted(c.user_id for c in await _copies(settings, topics.fanout)) == users


async def test_an_old_topic_event_without_a_cursor_is_dead_lettered_not_broadcast_again(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # The janitor deletes a finished cursor after FINISHED_FANOUT_KEEP; a replay of the topic
    # event after that (a DLQ replay, a long-retention topic, an offset reset) found no cursor and
    # sent the whole broadcast again. An old event with a cursor still resumes or replays as before.
    settings, topics, tenant = await _fanout_stack(stack)
    users = await _topic(pg_pool, tenant, "digest", 3)
    pruned = _broadcast(tenant, "digest")
    pruned.occurred_at = datetime.now(UTC) - STALE_BROADCAST_AFTER - timedelta(hours=1)
    resumed = _broadcast(tenant, "digest")
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
        results = await fanout.handle([_incoming(pruned), _incoming(resumed)])
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
    copies = await _copies(settings, topics.fanout)
    assert sorted(c.user_id for c in copies) == users[1:]  # only the resumed broadcast's rest


async def test_a_copy_the_broker_refuses_for_its_size_is_dead_lettered_and_the_probe_stays_yes(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # A size refusal was taken for an outage: the probe said no and the runner replayed the same
    # refusal for ever, holding every later broadcast on the partition.
    settings, topics, tenant = await _fanout_stack(stack)
    await _topic(pg_pool, tenant, "big", 2)
    small = await _topic(pg_pool, tenant, "small", 2)
    big = _broadcast(tenant, "big")
    big.payload = '{"text": "' + "x" * 4000 + '"}'
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=2000)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        results = await fanout.handle([_incoming(big), _incoming(_broadcast(tenant, "small"))])
        assert await fanout.probe() is True
    finally:
        await producer.stop()
    dead = results[0]
    assert isinstance(dead, DeadLetter)
    assert (dead.reason, dead.error_class) == ("too_large", "CopyTooLarge")
    assert results[1] == ()
    assert sorted(c.user_id for c in await _copies(settings, topics.fanout)) == small
