"""The classifier's dependencies, real servers: Redis limiter under concurrency, batched profile
lookups, Redis and PostgreSQL outages, deferred sends released by the fallback's poller."""

from __future__ import annotations

import asyncio
import time as clock_time
import uuid
from datetime import UTC, datetime, time
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from consumers.classifier.handler import Classifier, decide_config
from consumers.classifier.lookup import LookupUnavailable, ProfileCache, fetch_profiles
from consumers.classifier.ratelimit import LimiterUnavailable, LimitRequest, RateLimiter
from consumers.classifier.routing import load_routing
from consumers.devstack.processes import free_port
from consumers.emitter import build_event
from consumers.fallback.context import FallbackContext
from consumers.fallback.process import fire_batch_handlers, fire_handlers
from consumers.infra.clock import ManualClock
from consumers.infra.settings import ClassifierSettings, HeraldSettings, SchedulerSettings
from consumers.runtime.handling import DeadLetter, Incoming
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler, TimerPoller
from schemas.codec import default_codec
from schemas.errors import DependencyUnavailable
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, DomainEvent
from tests.kafka_helpers import read_all, wait_for_records

CODEC = default_codec()


def _uid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


# -- rate limiter -----------------------------------------------------------------------------


async def test_concurrent_callers_never_exceed_the_limit(stack: Any) -> None:
    # 200 callers at once, each on its own connection (several limiter processes in production)
    client = redis_asyncio.Redis.from_url(stack.redis_url, max_connections=256)
    limiter = RateLimiter(client)
    bucket = f"rl-test:{_uid('u')}:email:1"

    async def one(i: int) -> bool:
        (ok,) = await limiter.acquire([LimitRequest(bucket, f"msg-{i}", 7)])
        return ok

    try:
        results = await asyncio.gather(*(one(i) for i in range(200)))
        assert sum(results) == 7
        assert await client.scard(bucket) == 7
        assert 0 < await client.ttl(bucket) <= 3600 + 300
    finally:
        await client.aclose()


async def test_batches_are_atomic_and_replays_are_admitted_again(redis_client: redis_asyncio.Redis) -> None:
    limiter = RateLimiter(redis_client, chunk=16)
    a, b = f"rl-test:{_uid('a')}", f"rl-test:{_uid('b')}"
    reqs = [LimitRequest(a if i % 2 else b, f"m{i}", 3) for i in range(40)]
    first = await asyncio.gather(*(limiter.acquire(reqs[i::4]) for i in range(4)))
    assert sum(sum(r) for r in first) == 6  # 3 per bucket, whichever callers got there first
    admitted = {
        r.member
        for part, res in zip((reqs[i::4] for i in range(4)), first, strict=True)
        for r, ok in zip(part, res, strict=True)
        if ok
    }
    # a replay of the same batch (crash before commit) gets the same answers, without counting twice
    again = await limiter.acquire(reqs)
    assert {r.member for r, ok in zip(reqs, again, strict=True) if ok} == admitted


async def test_redis_down_fails_fast_then_cools_down() -> None:
    # redis-py retries a refused connection with backoff; the limiter must not make a batch wait
    client = redis_asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    clock = [0.0]
    limiter = RateLimiter(client, timeout_s=0.3, cooldown_s=5.0, monotonic=lambda: clock[0])
    try:
        started = clock_time.perf_counter()
        with pytest.raises(LimiterUnavailable):
            await limiter.acquire([LimitRequest("k", "m", 1)])
        with pytest.raises(LimiterUnavailable, match="cool-down"):
            await limiter.acquire([LimitRequest("k", "m", 1)])
        assert clock_time.perf_counter() - started < 1.0
        clock[0] = 5.1  # asked again after the cool-down (and still down)
        with pytest.raises(LimiterUnavailable) as info:
            await limiter.acquire([LimitRequest("k", "m", 1)])
        assert "cool-down" not in str(info.value)
    finally:
        await client.aclose()


async def test_a_limiter_that_recovers_answers_again(stack: Any) -> None:
    client = redis_asyncio.Redis.from_url(stack.redis_url)
    clock = [0.0]
    limiter = RateLimiter(client, timeout_s=1.0, cooldown_s=5.0, monotonic=lambda: clock[0])
    limiter._down_until = 5.0  # as after an outage
    try:
        with pytest.raises(LimiterUnavailable):
            await limiter.acquire([LimitRequest(f"rl-test:{_uid('c')}", "m", 1)])
        clock[0] = 6.0
        assert await limiter.acquire([LimitRequest(f"rl-test:{_uid('c')}", "m", 1)]) == [True]
    finally:
        await client.aclose()


# -- profile lookups ------------------------------------------------------------------------


async def test_profiles_are_fetched_in_one_query_per_batch_and_cached(pg_pool: asyncpg.Pool) -> None:
    users = [_uid("p") for _ in range(50)]
    await pg_pool.executemany(
        "INSERT INTO herald_recipients (user_id, email, timezone, locale, quiet_start, quiet_end) "
        "VALUES ($1, $2, 'America/St_Johns', 'pt', '22:00', '07:00')",
        [(u, f"{u}@example.com") for u in users[:40]],
    )
    await pg_pool.execute(
        "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES "
        "($1, 'marketing', 'email', false), ($1, 'activity', 'push', true)",
        users[0],
    )
    await pg_pool.execute(
        "INSERT INTO herald_webhook_endpoints (endpoint_id, owner_id, url, secrets, event_types) VALUES "
        "($1, $2, 'http://127.0.0.1:9/', '{s}', '{system.invoice.*}')",
        _uid("ep"),
        users[1],
    )
    clock = [0.0]
    cache = ProfileCache(pg_pool, ttl_s=30, max_size=45, monotonic=lambda: clock[0])
    keys = [("", u) for u in users]
    got = await cache.get_many(keys)
    assert cache.queries == 1 and set(got) == set(keys)
    p0 = got[keys[0]]
    assert p0.known and p0.email == f"{users[0]}@example.com" and p0.timezone == "America/St_Johns"
    assert p0.quiet is not None and p0.quiet.start == time(22) and p0.locale == "pt"
    assert (
        p0.preference("marketing", Channel.EMAIL) is False and p0.preference("activity", Channel.PUSH) is True
    )
    assert got[keys[1]].endpoints[0].wants("system.invoice.paid")
    assert not got[keys[1]].endpoints[0].wants("system.user.created")
    assert not got[keys[45]].known and got[keys[45]].email is None  # no row: defaults
    # the newest 45 are cached: a second batch of them costs no query
    await cache.get_many(keys[5:])
    assert cache.queries == 1
    await cache.get_many(keys[:5])
    assert cache.queries == 2
    clock[0] = 31.0  # past the TTL
    await cache.get_many(keys[:1])
    assert cache.queries == 3


async def test_a_lookup_in_flight_is_joined_not_repeated(pg_pool: asyncpg.Pool) -> None:
    # The runner starts the next batch's lookup (Classifier.prepare) while the current one is handled.
    users = [("", _uid("join")) for _ in range(20)]
    cache = ProfileCache(pg_pool, ttl_s=30, max_size=1000)
    ahead = asyncio.create_task(cache.get_many(users[:15]))
    await asyncio.sleep(0)  # the first lookup is in flight
    got = await cache.get_many(users[10:])  # five joined, five fetched here
    await ahead
    assert set(got) == set(users[10:])
    assert cache.queries == 2  # not three: users 10..14 were fetched once
    assert not cache._inflight


async def test_closed_pool_is_lookup_unavailable(stack: Any) -> None:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
    assert pool is not None
    await pool.close()
    with pytest.raises(LookupUnavailable):
        await fetch_profiles(pool, [("", "x")])


# -- the handler against outages, and the scheduler release ---------------------------------


def _settings(settings: HeraldSettings) -> HeraldSettings:
    classifier = ClassifierSettings(
        rate_limit_prefix=f"rl-{settings.topic_prefix}",
        rate_limits_per_hour={"high": 30, "medium": 20, "low": 3},
    )
    return settings.model_copy(update={"classifier": classifier})


def _handler(
    settings: HeraldSettings, pool: asyncpg.Pool, redis: redis_asyncio.Redis, clock: ManualClock
) -> Classifier:
    return Classifier(
        table=load_routing(settings.classifier.routing_file),
        profiles=ProfileCache(pool, ttl_s=30, max_size=1000),
        limiter=RateLimiter(redis),
        scheduler=Scheduler(pool, clock, namespace=settings.topic_prefix),
        config=decide_config(settings),
        clock=clock,
    )


def _batch(events: list[DomainEvent]) -> list[Incoming[DomainEvent]]:
    return [Incoming("events", 0, i, e.user_id.encode(), e, (), 0) for i, e in enumerate(events)]


async def test_redis_down_critical_and_high_flow_low_waits(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    settings = _settings(settings)
    user = _uid("r")
    await pg_pool.execute(
        "INSERT INTO herald_recipients (user_id, email, phone) VALUES ($1, $2, '+15550100100')",
        user,
        f"{user}@example.com",
    )
    dead = redis_asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    clock = ManualClock(datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC))
    handler = _handler(settings, pg_pool, dead, clock)
    topics = Topics(settings.topic_prefix)
    events = [
        build_event(t, user_id=user, occurred_at=clock.now())
        for t in ("security_alert", "payment_receipt", "comment_reply", "marketing.weekly", "nope")
    ]
    try:
        results = await handler.handle(_batch(events))
    finally:
        await dead.aclose()
    crit, high, medium, low, unknown = results
    assert isinstance(unknown, DeadLetter) and unknown.reason == "unknown_event_type"
    assert not isinstance(crit, DeadLetter) and {o.topic for o in crit} == {
        topics.channel(c, "priority") for c in ("push", "sms", "email")
    }
    assert not isinstance(high, DeadLetter) and [o.topic for o in high] == [
        topics.channel("push", "priority")
    ]
    assert not isinstance(medium, DeadLetter) and [o.topic for o in medium] == [
        topics.channel("in_app", "priority")
    ]
    assert not isinstance(low, DeadLetter) and [o.topic for o in low] == [topics.outcomes]
    outcome = CODEC.decode(low[0].value, DeliveryOutcome)
    assert (outcome.status.value, outcome.reason) == ("deferred", "rate_limiter_unavailable")
    row = await pg_pool.fetchrow(
        "SELECT topic, due_at, payload FROM herald_timers WHERE topic = $1 AND msg_key = $2",
        topics.events,
        user.encode(),
    )
    assert row is not None and row["due_at"] == outcome.not_before == datetime(2025, 6, 1, 12, 5, tzinfo=UTC)
    assert CODEC.decode(row["payload"], DomainEvent).event_id == events[3].event_id


async def test_postgres_down_is_retryable(
    settings: HeraldSettings, stack: Any, redis_client: redis_asyncio.Redis
) -> None:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
    assert pool is not None
    await pool.close()
    handler = _handler(_settings(settings), pool, redis_client, ManualClock())
    with pytest.raises(DependencyUnavailable):
        await handler.handle(_batch([build_event("payment_receipt", user_id=_uid("x"))]))


async def test_quiet_hours_deferral_is_released_by_the_fallback(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, redis_client: redis_asyncio.Redis
) -> None:
    settings = _settings(settings)
    topics = Topics(settings.topic_prefix)
    user = _uid("q")
    # 12:00 UTC is 17:45 in Kathmandu: inside 17:00-18:00 local
    await pg_pool.execute(
        "INSERT INTO herald_recipients (user_id, timezone, quiet_start, quiet_end) "
        "VALUES ($1, 'Asia/Kathmandu', '17:00', '18:00')",
        user,
    )
    clock = ManualClock(datetime(2025, 6, 1, 12, 0, tzinfo=UTC))
    handler = _handler(settings, pg_pool, redis_client, clock)
    ev = build_event("login_code", user_id=user, data={"code": "1"}, occurred_at=clock.now())
    (result,) = await handler.handle(_batch([ev]))
    assert not isinstance(result, DeadLetter)
    (out,) = result
    deferred = CODEC.decode(out.value, DeliveryOutcome)
    assert deferred.reason == "quiet_hours" and deferred.not_before == datetime(
        2025, 6, 1, 12, 15, tzinfo=UTC
    )
    # a replay of the same batch arms nothing new
    await handler.handle(_batch([ev]))
    key = deferred.message.idempotency_key + ":deferred"  # type: ignore[union-attr]
    assert await pg_pool.fetchval("SELECT count(*) FROM herald_timers WHERE key = $1", key) == 1

    target = topics.channel("push", "priority")
    await create_topics(settings, [target])
    producer = make_producer(settings)
    await producer.start()
    try:
        # the fallback releases deferrals (through the consent check: tests/integration/test_deferred_release.py)
        scheduler = Scheduler(pg_pool, clock, namespace=settings.topic_prefix)
        ctx = FallbackContext(
            scheduler=scheduler, topics=topics, codec=CODEC, settings=settings.fallback, clock=clock
        )
        poller = TimerPoller(
            scheduler,
            producer,
            SchedulerSettings(),
            handlers=fire_handlers(ctx),
            batch_handlers=fire_batch_handlers(ctx),
        )
        clock.advance(14 * 60)
        await poller.release_due()
        assert await pg_pool.fetchval("SELECT state FROM herald_timers WHERE key = $1", key) == "pending"
        assert await read_all(settings, target) == []
        clock.advance(61)
        while await poller.release_due():
            pass
    finally:
        await producer.stop()
    (record,) = await wait_for_records(settings, target, 1)
    msg = CODEC.decode(record.value, ChannelMessage)
    assert record.key == user.encode() and msg == deferred.message
    assert msg.not_before == deferred.not_before and msg.idempotency_key == deferred.idempotency_key
    assert await pg_pool.fetchval("SELECT state FROM herald_timers WHERE key = $1", key) == "fired"
