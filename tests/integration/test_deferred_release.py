"""A quiet-hours deferral asks the consent check again when it is released, real servers.

The classifier defers a push to the window's end; the fallback's poller releases it. Between the
two the user may switch that push off, reset their choices, or move the window later: the
message is then not sent (``suppressed``/``opted_out``) or held again. A user who changed nothing
gets the very record a ``publish`` timer would have produced, and ``publish`` deferrals armed
before the upgrade are still released.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio
import redis.asyncio as redis_asyncio

from consumers.classifier.consent import DIGEST_EVENT_TYPE
from consumers.classifier.handler import Classifier, decide_config
from consumers.classifier.lookup import ProfileCache
from consumers.classifier.ratelimit import RateLimiter
from consumers.classifier.routing import load_routing
from consumers.emitter import build_event
from consumers.fallback.context import FallbackContext
from consumers.fallback.handler import FallbackHandler
from consumers.fallback.process import fire_batch_handlers, fire_batch_locks, fire_handlers
from consumers.infra.clock import ManualClock
from consumers.infra.settings import HeraldSettings, SchedulerSettings
from consumers.runtime.handling import DeadLetter, Incoming
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from consumers.scheduler.retries import retry_timer_key
from consumers.scheduler.store import TIMER_BATCHES_UNDONE, Scheduler, TimerPoller, publish_timer
from consumers.scheduler.timer import KIND_DEFERRED_SEND
from consumers.workflow.context import WorkflowContext
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus
from tests.integration.fallback_harness import outcome_of
from tests.kafka_helpers import read_all

CODEC = default_codec()
# 12:00 UTC is 17:45 in Kathmandu: inside a 17:00-18:00 window, released at 12:15 UTC
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RELEASE = datetime(2025, 6, 1, 12, 15, tzinfo=UTC)


@dataclass
class Rig:
    settings: HeraldSettings
    pool: asyncpg.Pool
    clock: ManualClock
    classifier: Classifier
    poller: TimerPoller
    fallback: FallbackHandler  # with the routing table, as the fallback process runs it

    @property
    def push(self) -> str:
        return Topics(self.settings.topic_prefix).channel(Channel.PUSH, Lane.PRIORITY)

    async def user(self, *, push: bool | None = True, quiet_end: str = "18:00") -> str:
        user = f"d-{uuid.uuid4().hex[:10]}"
        await self.pool.execute(
            "INSERT INTO herald_recipients (user_id, timezone, quiet_start, quiet_end) "
            "VALUES ($1, 'Asia/Kathmandu', '17:00', $2::text::time)",
            user,
            quiet_end,
        )
        if push is not None:
            await self.set_push(user, push)
        return user

    async def set_push(self, user: str, enabled: bool) -> None:
        await self.pool.execute(
            "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ($1, 'activity', 'push', $2) "
            "ON CONFLICT (tenant, user_id, category, channel) DO UPDATE SET enabled = EXCLUDED.enabled",
            user,
            enabled,
        )

    async def defer(self, *users: str) -> list[DeliveryOutcome]:
        """A medium push (opt-in) per user, classified inside quiet hours: the deferred outcomes."""
        events = [
            build_event("comment_reply", user_id=u, data={"text": "hi"}, occurred_at=self.clock.now())
            for u in users
        ]
        batch = [Incoming("events", 0, i, e.user_id.encode(), e, (), 0) for i, e in enumerate(events)]
        deferred = []
        for result in await self.classifier.handle(batch):
            assert not isinstance(result, DeadLetter)
            for out in result:
                if out.topic == Topics(self.settings.topic_prefix).outcomes:
                    o = CODEC.decode(out.value, DeliveryOutcome)
                    if o.status is OutcomeStatus.DEFERRED:
                        deferred.append(o)
        assert len(deferred) == len(users)
        return deferred

    async def release_at(self, at: datetime) -> None:
        self.clock.set(at)
        while await self.poller.release_due():
            pass

    async def sent_to(self, user: str) -> list[Any]:
        return [r for r in await read_all(self.settings, self.push) if r.key == user.encode()]

    async def outcomes_of(self, nid: str) -> list[DeliveryOutcome]:
        outcomes = Topics(self.settings.topic_prefix).outcomes
        return [
            o
            for r in await read_all(self.settings, outcomes)
            if (o := CODEC.decode(r.value, DeliveryOutcome)).notification_id == nid
            and o.status is not OutcomeStatus.DEFERRED
        ]

    async def fail(self, message: ChannelMessage) -> None:
        """A failed_retryable outcome of ``message`` to the fallback, which arms its retry timer."""
        outcome = outcome_of(message, OutcomeStatus.FAILED_RETRYABLE, at=self.clock.now(), error_code="x")
        (done,) = await self.fallback.handle([Incoming("outcomes", 0, 0, None, outcome, (), 0)])
        assert not isinstance(done, DeadLetter)

    async def timer(self, key: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT kind, state, msg_key, payload, data FROM herald_timers WHERE namespace = $1 AND key = $2",
            self.settings.topic_prefix,
            key,
        )
        assert row is not None
        return row


@pytest_asyncio.fixture(loop_scope="session")
async def rig(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, redis_client: redis_asyncio.Redis
) -> AsyncIterator[Rig]:
    # a fresh topic prefix per test: its own timer namespace, so no other test's timer is due here
    clock = ManualClock(START)
    scheduler = Scheduler(pg_pool, clock, namespace=settings.topic_prefix)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.outcomes, *topics.channel_topics()])
    classifier = Classifier(
        table=load_routing(settings.classifier.routing_file),
        profiles=ProfileCache(pg_pool, ttl_s=30, max_size=1000),
        limiter=RateLimiter(redis_client),
        scheduler=scheduler,
        config=decide_config(settings),
        clock=clock,
    )
    ctx = FallbackContext(
        scheduler=scheduler, topics=topics, codec=CODEC, settings=settings.fallback, clock=clock
    )
    wf = WorkflowContext(
        table=classifier.table,
        decide=decide_config(settings),
        pool=pg_pool,
        scheduler=scheduler,
        clock=clock,
    )
    producer = make_producer(settings)
    await producer.start()
    poller = TimerPoller(
        scheduler,
        producer,
        SchedulerSettings(),
        handlers=fire_handlers(ctx),
        batch_handlers=fire_batch_handlers(ctx),
        batch_locks=fire_batch_locks(),
    )
    try:
        yield Rig(settings, pg_pool, clock, classifier, poller, FallbackHandler(ctx, pg_pool, workflows=wf))
    finally:
        await producer.stop()


async def test_a_deferred_push_whose_user_opts_out_before_release_is_not_sent(rig: Rig) -> None:
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    await rig.set_push(user, False)  # 17:50 local: the user switches activity push off
    await rig.release_at(RELEASE)
    assert await rig.sent_to(user) == []
    (end,) = await rig.outcomes_of(deferred.notification_id)
    assert (end.status, end.reason, end.channel) == (OutcomeStatus.SUPPRESSED, "opted_out", Channel.PUSH)
    assert end.detail is not None and end.detail.startswith("deferred send not sent")


async def test_an_opt_in_push_is_not_sent_once_the_users_choice_is_gone(rig: Rig) -> None:
    # medium push is opt-in: without a stored yes (reset to defaults) it does not go out
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    await rig.pool.execute("DELETE FROM herald_preferences WHERE user_id = $1", user)
    await rig.release_at(RELEASE)
    assert await rig.sent_to(user) == []
    (end,) = await rig.outcomes_of(deferred.notification_id)
    assert (end.status, end.reason) == (OutcomeStatus.SUPPRESSED, "opted_out")


async def test_a_user_who_moves_quiet_hours_later_is_held_again(rig: Rig) -> None:
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    await rig.pool.execute("UPDATE herald_recipients SET quiet_end = '19:00' WHERE user_id = $1", user)
    await rig.release_at(RELEASE)  # 18:00 local: still quiet now
    assert await rig.sent_to(user) == []
    assert await rig.outcomes_of(deferred.notification_id) == []
    await rig.release_at(RELEASE + timedelta(hours=1) - timedelta(seconds=1))
    assert await rig.sent_to(user) == []
    await rig.release_at(RELEASE + timedelta(hours=1))  # 19:00 local
    (record,) = await rig.sent_to(user)
    assert CODEC.decode(record.value, ChannelMessage) == deferred.message


async def test_unchanged_users_get_the_armed_record_at_release_in_one_batch(rig: Rig) -> None:
    users = [await rig.user() for _ in range(3)]
    deferred = await rig.defer(*users)
    armed = {}
    for u, d in zip(users, deferred, strict=True):
        assert d.message is not None
        row = await rig.timer(d.message.idempotency_key + ":deferred")
        assert row["kind"] == KIND_DEFERRED_SEND and row["state"] == "pending"
        armed[u] = (row["msg_key"], row["payload"])
    undone = TIMER_BATCHES_UNDONE.labels(KIND_DEFERRED_SEND)._value.get()
    await rig.release_at(RELEASE - timedelta(seconds=1))
    assert [await rig.sent_to(u) for u in users] == [[], [], []]
    await rig.release_at(RELEASE)
    for u, d in zip(users, deferred, strict=True):
        (record,) = await rig.sent_to(u)
        assert (record.key, record.value) == armed[u]  # the bytes a publish timer sent
        assert record.key == u.encode()
        assert CODEC.decode(record.value, ChannelMessage) == d.message
        assert d.message is not None and d.message.not_before == RELEASE
    assert TIMER_BATCHES_UNDONE.labels(KIND_DEFERRED_SEND)._value.get() == undone  # fired as one batch


async def test_a_bad_deferral_undoes_its_batch_and_the_others_go_one_by_one(rig: Rig) -> None:
    users = [await rig.user() for _ in range(2)]
    deferred = await rig.defer(*users)
    await rig.pool.execute(
        "UPDATE herald_timers SET payload = '\\x00ff'::bytea WHERE namespace = $1 AND key = $2",
        rig.settings.topic_prefix,
        deferred[0].message.idempotency_key + ":deferred",  # type: ignore[union-attr]
    )
    await rig.set_push(users[1], False)  # held nothing, armed nothing: its suppression comes once
    undone = TIMER_BATCHES_UNDONE.labels(KIND_DEFERRED_SEND)._value.get()
    await rig.release_at(RELEASE)
    assert TIMER_BATCHES_UNDONE.labels(KIND_DEFERRED_SEND)._value.get() == undone + 1
    bad = await rig.timer(deferred[0].message.idempotency_key + ":deferred")  # type: ignore[union-attr]
    assert bad["state"] == "failed"
    assert await rig.sent_to(users[0]) == [] and await rig.sent_to(users[1]) == []
    (end,) = await rig.outcomes_of(deferred[1].notification_id)
    assert (end.status, end.reason) == (OutcomeStatus.SUPPRESSED, "opted_out")


async def test_a_publish_deferral_armed_before_the_upgrade_is_still_released(rig: Rig) -> None:
    # what _defer_for_quiet_hours armed before deferred_send: a publish timer, released as it is
    # (no consent check: it was armed without the data that check needs)
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    assert deferred.message is not None
    key = deferred.message.idempotency_key + ":deferred"
    row = await rig.timer(key)
    await rig.pool.execute(
        "DELETE FROM herald_timers WHERE namespace = $1 AND key = $2", rig.settings.topic_prefix, key
    )
    old = publish_timer(key, RELEASE, rig.push, row["msg_key"], row["payload"])
    assert await rig.poller.scheduler.arm([old]) == 1
    await rig.release_at(RELEASE)
    (record,) = await rig.sent_to(user)
    assert (record.key, record.value) == (row["msg_key"], row["payload"])
    assert (await rig.timer(key))["state"] == "fired"


async def test_a_held_again_opt_in_deferral_still_needs_the_stored_yes(rig: Rig) -> None:
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    await rig.pool.execute("UPDATE herald_recipients SET quiet_end = '19:00' WHERE user_id = $1", user)
    await rig.release_at(RELEASE)  # held again until 19:00 local
    held = await rig.pool.fetchval(
        "SELECT data FROM herald_timers WHERE namespace = $1 AND key LIKE $2 AND state = 'pending'",
        rig.settings.topic_prefix,
        deferred.message.idempotency_key + ":deferred:held:%",  # type: ignore[union-attr]
    )
    assert held is not None and '"opt_in": true' in held
    await rig.pool.execute("DELETE FROM herald_preferences WHERE user_id = $1", user)
    await rig.release_at(RELEASE + timedelta(hours=1))
    assert await rig.sent_to(user) == []
    (end,) = await rig.outcomes_of(deferred.notification_id)
    assert (end.status, end.reason) == (OutcomeStatus.SUPPRESSED, "opted_out")


async def test_a_retry_of_an_opt_in_push_needs_the_stored_yes_at_release(rig: Rig) -> None:
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    await rig.release_at(RELEASE)
    (record,) = await rig.sent_to(user)
    message = CODEC.decode(record.value, ChannelMessage)
    await rig.fail(message)  # FCM failed retryably: the fallback arms a retry
    row = await rig.timer(retry_timer_key(message.idempotency_key, message.attempt + 1))
    assert row["data"] is not None and '"opt_in": true' in row["data"]  # comment_reply: push opt-in
    await rig.pool.execute("DELETE FROM herald_preferences WHERE user_id = $1", user)
    await rig.release_at(RELEASE + timedelta(hours=1))
    assert len(await rig.sent_to(user)) == 1  # not resent
    (end,) = await rig.outcomes_of(deferred.notification_id)
    assert (end.status, end.reason) == (OutcomeStatus.SUPPRESSED, "opted_out")


async def test_a_digest_retry_is_not_sent_once_the_user_switched_digests_off(rig: Rig) -> None:
    user = await rig.user()
    (deferred,) = await rig.defer(user)
    assert deferred.message is not None
    digest = dataclasses.replace(
        deferred.message,
        event_type=DIGEST_EVENT_TYPE,
        template=DIGEST_EVENT_TYPE,
        channel=Channel.EMAIL,
        recipient=f"{user}@example.com",
        idempotency_key=deferred.message.idempotency_key + ":digest",
    )
    rig.clock.set(RELEASE)
    await rig.fail(digest)
    await rig.pool.execute(
        "UPDATE herald_recipients SET digest = false WHERE user_id = $1", user
    )  # overnight
    await rig.release_at(RELEASE + timedelta(hours=1))
    email = Topics(rig.settings.topic_prefix).channel(Channel.EMAIL, Lane.PRIORITY)
    assert [r for r in await read_all(rig.settings, email) if r.key == user.encode()] == []
    ends = [o for o in await rig.outcomes_of(deferred.notification_id) if o.channel is Channel.EMAIL]
    assert [(o.status, o.reason) for o in ends] == [(OutcomeStatus.SUPPRESSED, "opted_out")]
