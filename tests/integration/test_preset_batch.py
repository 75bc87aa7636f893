"""The presets' steps of one poll fired together (``fire_batch_handlers``): the same effects as one
by one in fewer statements, a bad step set aside alone, a replay that sends nothing new, and two
pollers that neither deadlock nor run a step twice. Real servers, the harness's manual clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

import asyncpg
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.fallback.decisions import escalation_email_key
from consumers.fallback.process import fire_batch_handlers, fire_batch_locks, fire_handlers
from consumers.infra.settings import HeraldSettings, SchedulerSettings
from consumers.runtime.handling import Output
from consumers.scheduler.store import Scheduler, Timer, TimerPoller
from consumers.scheduler.timer import read_timer
from consumers.workflow.context import KIND_STEP
from consumers.workflow.preset_batch import fire_preset_steps
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, OutcomeStatus, Tier
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, running_harness

DAY = 86_400.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(settings: HeraldSettings, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    async with running_harness(settings, pg_pool) as harness:
        yield harness


@dataclass
class Steps:
    """The notifications whose preset step is due after a day: pushes (high) and in-app items (medium)."""

    pushes: list[ChannelMessage] = field(default_factory=list)
    unread: list[ChannelMessage] = field(default_factory=list)
    read: list[ChannelMessage] = field(default_factory=list)


async def _steps(h: Harness, *, high: int, unread: int, read: int = 0, users: int | None = None) -> Steps:
    """Preset steps armed through the fallback handler. ``users``: how many users share the items
    (each has a digest); by default one each."""
    out = Steps()
    names = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(users or high + unread + read)]
    for user in names:
        await h.add_recipient(user, f"{user}@example.com")
    now = h.clock.now()
    for i in range(high + unread + read):
        user = names[i % len(names)]
        if i < high:
            m = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=now)
            out.pushes.append(m)
        else:
            m = channel_message(user, Channel.IN_APP, Tier.MEDIUM, event_type="table.medium", occurred_at=now)
            await h.add_inbox(m, f"item {i}", now)
            (out.unread if i < high + unread else out.read).append(m)
        await h.feed(outcome_of(m, OutcomeStatus.SENT, at=now, provider="fcm"))
    for m in out.read:
        await h.pool.execute(
            "UPDATE herald_inbox SET read_at = $2 WHERE notification_id = $1", m.notification_id, now
        )
    return out


async def _runs(h: Harness, messages: Sequence[ChannelMessage]) -> list[list[tuple[int, str, str]]]:
    return [
        [
            tuple(r)
            for r in await h.pool.fetch(
                "SELECT step, kind, result FROM herald_workflow_runs WHERE notification_id = $1",
                m.notification_id,
            )
        ]
        for m in messages
    ]


async def _states(h: Harness, messages: Sequence[ChannelMessage]) -> list[str]:
    return [
        await h.pool.fetchval(
            "SELECT state FROM herald_workflows WHERE notification_id = $1", m.notification_id
        )
        for m in messages
    ]


async def _escalation_emails(h: Harness, pushes: Sequence[ChannelMessage]) -> list[str]:
    """The escalation emails sent (by key) for these pushes, duplicates included."""
    keys = {escalation_email_key(p.idempotency_key) for p in pushes}
    return sorted(e.idempotency_key for e in await h.emails() if e.idempotency_key in keys)


class Counted:
    """A poller on a pool of its own whose statements (round trips) are counted."""

    def __init__(self, h: Harness, pool: asyncpg.Pool, counter: list[int], *, batch: bool) -> None:
        self.counter = counter
        scheduler = Scheduler(pool, h.clock, namespace=h.settings.topic_prefix)
        self.poller = TimerPoller(
            scheduler,
            h.producer,
            h.settings.scheduler,
            handlers=fire_handlers(h.ctx),
            batch_handlers=fire_batch_handlers(h.ctx) if batch else None,
            batch_locks=fire_batch_locks(),
        )

    async def release(self) -> int:
        self.counter[0] = 0
        while await self.poller.release_due() > 0:
            pass
        return self.counter[0]


@pytest_asyncio.fixture(loop_scope="session")
async def counted_pool(stack: DevStack) -> AsyncIterator[tuple[asyncpg.Pool, list[int]]]:
    counter = [0]

    def count(_: object) -> None:
        counter[0] += 1

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(count)

    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2, init=init)
    assert pool is not None
    yield pool, counter
    await pool.close()


async def _fire_a_day_later(h: Harness, poller: Counted) -> tuple[Steps, int]:
    steps = await _steps(h, high=4, unread=5, read=5)
    h.clock.advance(DAY)
    statements = await poller.release()
    await h.advance(120)  # the digests go out
    return steps, statements


async def test_a_polls_steps_fire_together_as_they_do_one_by_one_in_fewer_statements(
    h: Harness, counted_pool: tuple[asyncpg.Pool, list[int]]
) -> None:
    pool, counter = counted_pool
    together, n_together = await _fire_a_day_later(h, Counted(h, pool, counter, batch=True))
    alone, n_alone = await _fire_a_day_later(h, Counted(h, pool, counter, batch=False))
    for steps in (together, alone):
        assert await _runs(h, steps.pushes) == [[(2, "escalate", "email")]] * 4
        assert await _runs(h, steps.unread) == [[(2, "digest", "joined")]] * 5
        assert await _runs(h, steps.read) == [[(2, "digest", "read")]] * 5
        assert set(await _states(h, steps.pushes + steps.unread + steps.read)) == {"done"}
        keys = [escalation_email_key(p.idempotency_key) for p in steps.pushes]
        assert await _escalation_emails(h, steps.pushes) == sorted(keys)  # one each
        users = {m.user_id for m in steps.unread}
        assert sorted(
            e.user_id for e in await h.emails() if e.event_type == "digest" and e.user_id in users
        ) == (sorted(users))
    # one by one: a savepoint, the lock and the state update per step besides its own statements;
    # together those, the inbox and receipt looks, the contacts and the digest items once a poll
    assert n_together * 2 <= n_alone, (n_together, n_alone)  # 45 and 100 when written


async def test_a_bad_step_is_set_aside_alone_and_the_rest_of_its_batch_fires(h: Harness) -> None:
    steps = await _steps(h, high=3, unread=2)
    bad = steps.pushes[0]
    # A push whose key PostgreSQL refuses (a NUL byte), due last: the batch fails on it late, after
    # joining the digests and escalating the other pushes. Unless all of that is undone, the one by
    # one pass finds those escalations made ("already": no email) and the runs below differ.
    event = await h.pool.fetchval(
        "SELECT event FROM herald_workflows WHERE notification_id = $1", bad.notification_id
    )
    poisoned = replace(default_codec().decode(event, ChannelMessage), idempotency_key="push\x00key")
    await h.pool.execute(
        "UPDATE herald_workflows SET event = $2 WHERE notification_id = $1",
        bad.notification_id,
        default_codec().encode(poisoned),
    )
    await h.pool.execute(
        "UPDATE herald_timers SET due_at = due_at + interval '1 second' "
        "WHERE namespace = $1 AND kind = $2 AND data->>'notification_id' = $3",
        h.settings.topic_prefix,
        KIND_STEP,
        bad.notification_id,
    )
    h.clock.advance(DAY)
    assert await h.release() == 5
    failed = await h.pool.fetch(
        "SELECT data->>'notification_id' AS nid, last_error FROM herald_timers "
        "WHERE namespace = $1 AND kind = $2 AND state = 'failed' AND data->>'notification_id' = ANY($3::text[])",
        h.settings.topic_prefix,
        KIND_STEP,
        [m.notification_id for m in steps.pushes + steps.unread],
    )
    assert [r["nid"] for r in failed] == [bad.notification_id]
    assert await _runs(h, steps.pushes) == [[], [(2, "escalate", "email")], [(2, "escalate", "email")]]
    assert await _runs(h, steps.unread) == [[(2, "digest", "joined")]] * 2
    assert await _states(h, steps.pushes) == ["waiting", "done", "done"]  # the bad one untouched
    good = steps.pushes[1:]
    assert await _escalation_emails(h, good) == sorted(escalation_email_key(p.idempotency_key) for p in good)
    assert await _escalation_emails(h, [bad]) == []
    escalations = await h.pool.fetchval(
        "SELECT count(*) FROM herald_escalations WHERE notification_id = ANY($1::text[])",
        [p.notification_id for p in steps.pushes],
    )
    assert escalations == 2  # the batch's own escalations were undone with it, then made once


async def _due_steps(h: Harness, conn: asyncpg.Connection, messages: Sequence[ChannelMessage]) -> list[Timer]:
    rows = await conn.fetch(
        "SELECT key, kind, due_at, topic, msg_key, payload, data FROM herald_timers WHERE namespace = $1 "
        "AND kind = $2 AND state = 'pending' AND data->>'notification_id' = ANY($3::text[]) ORDER BY due_at "
        "FOR UPDATE",
        h.settings.topic_prefix,
        KIND_STEP,
        [m.notification_id for m in messages],
    )
    return [read_timer(r) for r in rows]


def _emails_in(outputs: Sequence[Output]) -> list[str]:
    codec = default_codec()
    return sorted(
        codec.decode(o.value, ChannelMessage).idempotency_key for o in outputs if "email" in o.topic
    )


async def test_a_batch_replayed_after_a_crash_before_commit_sends_the_same_keys_and_after_commit_nothing(
    h: Harness,
) -> None:
    steps = await _steps(h, high=3, unread=2)
    h.clock.advance(DAY)
    crashed: list[Output] = []
    async with h.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        timers = await _due_steps(h, conn, steps.pushes + steps.unread)
        assert len(timers) == 5
        for outputs in (await fire_preset_steps(h.ctx, timers, conn)).values():
            crashed += outputs
        await tx.rollback()  # the process died after producing, before its commit
    assert await h.release() == 5
    sent = _emails_in(crashed)
    assert sent == sorted(escalation_email_key(p.idempotency_key) for p in steps.pushes)
    assert await _escalation_emails(h, steps.pushes) == sent  # the same keys: the email consumer sends once
    async with h.pool.acquire() as conn, conn.transaction():
        again = await fire_preset_steps(h.ctx, timers, conn)
    assert sorted(again) == sorted(t.key for t in timers)
    assert [o for outputs in again.values() for o in outputs] == []
    assert (
        await _runs(h, steps.pushes + steps.unread)
        == [[(2, "escalate", "email")]] * 3 + [[(2, "digest", "joined")]] * 2
    )


async def test_two_pollers_at_once_neither_deadlock_nor_run_a_step_twice(h: Harness) -> None:
    steps = await _steps(h, high=24, unread=24, users=6)  # items of 6 users: their digests contend
    for push in steps.pushes[::3]:  # a push that also failed: a second step timer of its notification
        await h.feed(outcome_of(push, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now(), reason="no_device"))
    h.clock.advance(DAY)
    small = SchedulerSettings(batch_size=7)
    pollers = [
        TimerPoller(
            h.scheduler,
            h.producer,
            small,
            handlers=fire_handlers(h.ctx),
            batch_handlers=fire_batch_handlers(h.ctx),
            batch_locks=fire_batch_locks(),
        )
        for _ in range(2)
    ]

    async def drain(poller: TimerPoller) -> int:
        total = 0
        while (n := await poller.release_due()) > 0:
            total += n
            await asyncio.sleep(0)
        return total

    released = await asyncio.wait_for(asyncio.gather(*(drain(p) for p in pollers)), 60)
    released_after = await h.release()  # what one left while the other held it
    assert sum(released) + released_after == 24 + 8 + 24
    assert all(n > 0 for n in released), released  # both took part
    assert await _runs(h, steps.pushes) == [[(2, "escalate", "email")]] * 24
    assert await _runs(h, steps.unread) == [[(2, "digest", "joined")]] * 24
    assert await _escalation_emails(h, steps.pushes) == sorted(
        escalation_email_key(p.idempotency_key) for p in steps.pushes
    )
    joined = await h.pool.fetchval(
        "SELECT count(*) FROM herald_digest_items WHERE notification_id = ANY($1::text[])",
        [m.notification_id for m in steps.unread],
    )
    assert joined == 24
    failed = await h.pool.fetchval(
        "SELECT count(*) FROM herald_timers WHERE namespace = $1 AND state = 'failed' AND due_at <= $2",
        h.settings.topic_prefix,
        h.clock.now(),
    )
    assert failed == 0
    await h.advance(120)
    users = {m.user_id for m in steps.unread}
    digests = [e.user_id for e in await h.emails() if e.event_type == "digest" and e.user_id in users]
    assert sorted(digests) == sorted(users)  # one digest each, all their items in it
