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
from pathlib import Path

import asyncpg

from consumers.api.admin.recipients_pg import RecipientStore
from consumers.classifier.process import build_classifier
from consumers.devstack import DevStack
from consumers.emitter import partition_key
from consumers.fanout.copies import copy_for, copy_id
from consumers.fanout.handler import Fanout
from consumers.infra.resources import Resources
from consumers.runtime.handling import DeadLetter
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import DomainEvent
from tests.conftest import make_settings
from tests.integration.fanout_helpers import (
    broadcast_event,
    copies_on,
    fanout_stack,
    incoming,
    subscribed_topic,
)
from tests.kafka_helpers import produce_raw, read_all

ROOT = Path(__file__).resolve().parents[2]


async def test_copies_have_deterministic_ids_and_a_replay_sends_nothing(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings, topics, tenant = await fanout_stack(stack)
    users = await subscribed_topic(pg_pool, tenant, "watchers", 250)
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
        event = broadcast_event(tenant, "watchers")
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
    users_a = await subscribed_topic(pg_pool, first, "news", 3)
    users_b = await subscribed_topic(pg_pool, second, "news", 4)
    event_a = broadcast_event(first, "news")
    event_b = broadcast_event(second, "news")
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
    users = await subscribed_topic(pg_pool, tenant, "all", n)
    event = broadcast_event(tenant, "all")
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
        broadcast = broadcast_event(None, "news")
        broadcast.type = "security_alert"  # critical: push + sms + email on the priority lane normally
        copy = copy_for(broadcast, uid)
        main = await build_classifier(res)
        (skipped,) = await main.handle([incoming(broadcast)])
        assert skipped == ()  # the fan-out's job, not the classifier's
        bulk = await build_classifier(res, broadcast=True)
        (outputs,) = await bulk.handle([incoming(copy)])
        assert not isinstance(outputs, DeadLetter)
        channel_topics = [o.topic for o in outputs if ".channel." in o.topic]
        assert channel_topics and all(t.endswith(".bulk") for t in channel_topics), channel_topics
        (direct,) = await main.handle([incoming(copy)])  # the same event sent to the user directly
        assert not isinstance(direct, DeadLetter)
        assert all(o.topic.endswith(".priority") for o in direct if ".channel." in o.topic)
    finally:
        await res.close()


async def test_a_topic_event_with_bad_identifiers_is_dead_lettered_naming_the_field(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    """A raw producer bypasses the emitter's check: a NUL in the topic once reached PostgreSQL,
    which refused it, and the refusal was retried as an outage forever, holding the partition."""
    settings, topics, tenant = await fanout_stack(stack)
    users = await subscribed_topic(pg_pool, tenant, "alerts", 3)
    bad = {
        "topic: control character or lone surrogate U+0000": broadcast_event(tenant, "ale\x00rts"),
        "tenant: 500 characters > 128": broadcast_event(tenant, "alerts"),
        "event_id: must not be empty": broadcast_event(tenant, "alerts"),
    }
    bad["tenant: 500 characters > 128"].tenant = "t" * 500
    bad["event_id: must not be empty"].event_id = " "
    good = broadcast_event(tenant, "alerts")
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        assert await fanout.probe() is True  # the poison net's evidence that PostgreSQL answers
        results = await fanout.handle([incoming(e) for e in [*bad.values(), good]])
    finally:
        await producer.stop()
    for detail, result in zip(bad, results, strict=False):
        assert isinstance(result, DeadLetter)
        assert (result.reason, result.error_class) == ("invalid_event", "InvalidIdentifier")
        assert result.detail.startswith(detail), result.detail
    assert results[-1] == ()
    copies = [default_codec().decode(r.value, DomainEvent) for r in await read_all(settings, topics.fanout)]
    assert sorted(c.user_id for c in copies) == users


async def test_an_erased_subscriber_gets_no_copy_of_the_next_broadcast(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    # Erasure once left the subscription: the next broadcast fanned a copy out to the erased id,
    # and the classifier's profile for an unknown user delivered it (inbox rows, workflow state).
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.fanout])
    tenant, other = settings.topic_prefix, f"{settings.topic_prefix}-other"
    users = await subscribed_topic(pg_pool, tenant, "news", 3)
    await subscribed_topic(pg_pool, other, "news", 3)  # the same ids in another tenant: other recipients
    erased = users[1]
    removed = await RecipientStore(pg_pool).erase(tenant, erased)
    assert removed["topic_subscriptions"] == 1
    producer = make_producer(settings)
    await producer.start()
    try:
        fanout = Fanout(pg_pool, producer, default_codec(), topics.fanout)
        assert await fanout.fan_out(broadcast_event(tenant, "news")) == 2
        assert await fanout.fan_out(broadcast_event(other, "news")) == 3
    finally:
        await producer.stop()
    copies = await copies_on(settings, topics.fanout)
    assert sorted(c.user_id for c in copies if c.tenant == tenant) == [users[0], users[2]]
    assert sorted(c.user_id for c in copies if c.tenant == other) == users
