"""A poll's escalations written in one statement, each sent once; and a receipts batch and a
poller's batch on the same notifications, locking in opposite orders, that finish without a
deadlock (PostgreSQL would abort one, an outage retried after a back-off). Real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.fallback.decisions import escalation_email_key
from consumers.fallback.handler import FallbackHandler
from consumers.fallback.process import fire_batch_handlers, fire_batch_locks, fire_handlers
from consumers.runtime.handling import Incoming
from consumers.scheduler.store import Scheduler, TimerPoller
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    OutcomeStatus,
    Receipt,
    ReceiptStatus,
    Tier,
)
from tests.integration.fallback_harness import Harness, channel_message, outcome_of
from tests.integration.test_preset_batch import DAY, _escalation_emails, _runs, _states, _steps, h
from tests.pg_helpers import waits_for_a_lock
from tests.waiting import until

__all__ = ["h"]  # the harness fixture, shared with test_preset_batch


@dataclass
class Pools:
    """Pools named in pg_stat_activity (application_name), so a test sees which one waits, and
    the statements each one ran."""

    stack: DevStack
    made: list[asyncpg.Pool] = field(default_factory=list)
    statements: dict[str, list[str]] = field(default_factory=dict)

    async def make(self, name: str) -> asyncpg.Pool:
        ran = self.statements.setdefault(name, [])

        async def init(conn: asyncpg.Connection) -> None:
            conn.add_query_logger(lambda q: ran.append(q.query))

        pool = await asyncpg.create_pool(
            self.stack.database_url,
            min_size=1,
            max_size=2,
            init=init,
            server_settings={"application_name": name},
        )
        assert pool is not None
        self.made.append(pool)
        return pool


@pytest_asyncio.fixture(loop_scope="session")
async def pools(stack: DevStack) -> AsyncIterator[Pools]:
    made = Pools(stack)
    yield made
    for pool in made.made:
        await pool.close()


def _poller(h: Harness, pool: asyncpg.Pool) -> TimerPoller:
    scheduler = Scheduler(pool, h.clock, namespace=h.settings.topic_prefix)
    return TimerPoller(
        scheduler,
        h.producer,
        h.settings.scheduler,
        handlers=fire_handlers(h.ctx),
        batch_handlers=fire_batch_handlers(h.ctx),
        batch_locks=fire_batch_locks(),
    )


async def test_a_polls_escalations_are_written_in_one_statement_and_each_sends_once(
    h: Harness, pools: Pools
) -> None:
    steps = await _steps(h, high=5, unread=0)
    nowhere = channel_message("u-no-address", Channel.PUSH, Tier.HIGH, occurred_at=h.clock.now())
    await h.add_recipient("u-no-address", None)
    await h.feed(outcome_of(nowhere, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"))
    # one escalated already (its row is there, as after an older path's escalation): not again
    done = steps.pushes[0]
    await h.pool.execute(
        "INSERT INTO herald_escalations (escalation_key, notification_id, push_key, reason, result, created_at) "
        "VALUES ($1, $2, $3, 'push_timeout', 'email', $4)",
        escalation_email_key(done.idempotency_key),
        done.notification_id,
        done.idempotency_key,
        h.clock.now(),
    )
    pool = await pools.make("escalations-counted")
    h.clock.advance(DAY)
    assert await _poller(h, pool).release_due() == 6
    inserts = [q for q in pools.statements["escalations-counted"] if "INTO herald_escalations" in q]
    assert len(inserts) == 1, inserts  # six escalations, one statement
    assert await _runs(h, [*steps.pushes, nowhere]) == [[(2, "escalate", "already")]] + [
        [(2, "escalate", "email")]
    ] * 4 + [[(2, "escalate", "no_address")]]
    sent = steps.pushes[1:]
    assert await _escalation_emails(h, [*steps.pushes, nowhere]) == sorted(
        escalation_email_key(p.idempotency_key) for p in sent
    )
    suppressed = [o for o in await h.outcomes() if o.notification_id == nowhere.notification_id]
    assert [(o.status, o.reason) for o in suppressed if o.status is OutcomeStatus.SUPPRESSED] == [
        (OutcomeStatus.SUPPRESSED, "no_address")
    ]


async def _meet_midway(
    h: Harness,
    held: ChannelMessage,
    poll: Callable[[], Awaitable[int]],
    batch: Callable[[], Awaitable[Sequence[object]]],
    names: tuple[str, str],
) -> tuple[int, Sequence[object]]:
    """A third connection holds ``held``'s state row while the poll and then the fallback batch
    start, each until it waits for a lock (the batch may also finish), then lets go: both are
    mid-way at once. Their results, after both end (a deadlock raises in one of them)."""
    poller, fallback_name = names
    async with h.pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "SELECT 1 FROM herald_workflows WHERE notification_id = $1 FOR UPDATE", held.notification_id
        )
        polling = asyncio.ensure_future(poll())
        await until(
            lambda: waits_for_a_lock(h.pool, poller), what="the poll waits for the held row", timeout=30
        )
        fallback = asyncio.ensure_future(batch())

        async def fallback_stopped() -> bool:
            return fallback.done() or await waits_for_a_lock(h.pool, fallback_name)

        await until(fallback_stopped, what="the fallback batch waits for a lock or is done", timeout=30)
        await tx.rollback()
    released, results = await asyncio.wait_for(asyncio.gather(polling, fallback), 30)
    return released, results


@pytest.mark.parametrize("blocked", ["first receipt's row", "an earlier row"])
async def test_a_receipts_batch_and_a_poll_on_the_same_notifications_do_not_deadlock(
    h: Harness, pools: Pools, blocked: str
) -> None:
    """Three waiting pushes n0 < n1 < n2 due together; receipts for n2 then n1 (the opposite of the
    poller's order). A third connection holds one state row so both batches are mid-way at once:
    n1 (the receipts' second row; the poller waits for it holding n0) or n0 (the poller waits for it
    holding the three timers, before any state row). Then it lets go. Without one lock order the
    first deadlocks on n1/n2; without the receipt's cancel skipping a timer a poller holds, the second
    deadlocks on a timer and a state row."""
    steps = await _steps(h, high=3, unread=0)
    n0, n1, n2 = sorted(steps.pushes, key=lambda m: m.notification_id)
    h.clock.advance(DAY)
    poller_pool = await pools.make("deadlock-poller")
    fallback_pool = await pools.make("deadlock-fallback")
    handler = FallbackHandler(h.ctx, fallback_pool, rand=lambda: 0.5)
    receipts: list[Incoming[DeliveryOutcome | Receipt]] = [
        Incoming(
            "t",
            0,
            i,
            None,
            Receipt(m.notification_id, m.user_id, ReceiptStatus.DELIVERED, at=h.clock.now()),
            (),
            0,
        )
        for i, m in enumerate([n2, n1])
    ]
    held = n1 if blocked == "first receipt's row" else n0
    # a deadlock raises in one of them (after PostgreSQL's deadlock_timeout): the outage path
    released, results = await _meet_midway(
        h,
        held,
        _poller(h, poller_pool).release_due,
        lambda: handler.handle(receipts),
        ("deadlock-poller", "deadlock-fallback"),
    )
    assert released == 3
    assert len(results) == 2
    assert await _states(h, [n0, n1, n2]) == ["done"] * 3
    if blocked == "first receipt's row":  # the poll, waiting first, takes n1 and n2 before the receipts
        assert await _escalation_emails(h, [n0, n1, n2]) == sorted(
            escalation_email_key(p.idempotency_key) for p in (n0, n1, n2)
        )
        assert await _runs(h, [n0, n1, n2]) == [[(2, "escalate", "email")]] * 3
    else:  # the receipts end n1's and n2's waits while the poll waits for n0; its fire finds them done
        assert await _escalation_emails(h, [n0, n1, n2]) == [escalation_email_key(n0.idempotency_key)]
        assert await _runs(h, [n0, n1, n2]) == [[(2, "escalate", "email")], [], []]
    timers = await h.pool.fetch(
        "SELECT state FROM herald_timers WHERE kind = 'workflow_step' AND data->>'notification_id' = ANY($1)",
        [n0.notification_id, n1.notification_id, n2.notification_id],
    )
    assert sorted(t["state"] for t in timers) == ["fired"] * 3  # a cancel that skipped one left it to fire
    assert await _poller(h, poller_pool).release_due() == 0


async def test_a_critical_outcome_and_a_push_against_a_poll_of_the_push_and_the_critical_check(
    h: Harness, pools: Pools
) -> None:
    """A fallback batch [critical b delivered, push a sent again] writes b's critical watch and a's
    state row; a poll holding a's state row (its batch) checks b's watch next (one by one). A third
    connection holds a's state row so both are mid-way at once. Without the batch locking its one
    state row first, before the watch, the two deadlock on a's state row and b's watch."""
    (a,) = (await _steps(h, high=1, unread=0)).pushes
    b = channel_message(a.user_id, Channel.SMS, Tier.CRITICAL, occurred_at=h.clock.now())
    await h.feed(outcome_of(b, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now()))  # watched, not reached
    h.clock.advance(DAY)
    poller_pool = await pools.make("critical-poller")
    fallback_pool = await pools.make("critical-fallback")
    handler = FallbackHandler(h.ctx, fallback_pool, rand=lambda: 0.5)
    batch: list[Incoming[DeliveryOutcome | Receipt]] = [
        Incoming("t", 0, i, None, o, (), 0)
        for i, o in enumerate(
            [
                outcome_of(b, OutcomeStatus.DELIVERED, at=h.clock.now()),
                outcome_of(a, OutcomeStatus.SENT, at=h.clock.now(), provider="fcm"),
            ]
        )
    ]
    released, results = await _meet_midway(
        h,
        a,
        _poller(h, poller_pool).release_due,
        lambda: handler.handle(batch),
        ("critical-poller", "critical-fallback"),
    )
    assert released == 2  # a's escalate step and b's critical check
    assert len(results) == 2
    assert await _runs(h, [a]) == [[(2, "escalate", "email")]]
    verdict = await h.pool.fetchval(
        "SELECT verdict FROM herald_critical_watch WHERE notification_id = $1", b.notification_id
    )
    assert verdict == "undelivered"  # checked before the delivered outcome's batch went on
