"""The decision table run end to end on the fallback consumer and the workflow executor, one row per
preset: what happens after a route's first send when nobody confirms it, and when somebody does.

The classifier's first send is given as its outcome (as the channel consumer reports it); the
rest is the real handler, the real executor and the real timers on a manual clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from consumers.infra.settings import HeraldSettings
from schemas.models import Channel, OutcomeStatus, Receipt, ReceiptStatus, Tier
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, running_harness

DAY = 86_400.0
ESCALATION = 300.0
FIRST = {
    Tier.CRITICAL: Channel.PUSH,
    Tier.HIGH: Channel.PUSH,
    Tier.MEDIUM: Channel.IN_APP,
    Tier.LOW: Channel.EMAIL,
    Tier.SYSTEM: Channel.WEBHOOK,
}


@pytest_asyncio.fixture(loop_scope="session")
async def h(settings: HeraldSettings, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    async with running_harness(settings, pg_pool) as harness:
        yield harness


async def _first_send(h: Harness, tier: Tier) -> tuple[str, str]:
    user = f"u-{uuid.uuid4().hex[:12]}"
    await h.add_recipient(user, f"{user}@example.com")
    m = channel_message(user, FIRST[tier], tier, event_type=f"table.{tier.value}", occurred_at=h.clock.now())
    if tier is Tier.MEDIUM:
        await h.add_inbox(m, "an unread item", h.clock.now())
    await h.feed(outcome_of(m, OutcomeStatus.SENT, at=h.clock.now()))
    return user, m.notification_id


async def _emails_to(h: Harness, user: str) -> list[str]:
    return [e.event_type for e in await h.emails() if e.user_id == user]


# tier → the emails the user has after each clock step, when nobody confirms the first send
UNCONFIRMED: dict[Tier, list[tuple[float, list[str]]]] = {
    Tier.CRITICAL: [],
    # the push's content by email at 5 min, not a second earlier
    Tier.HIGH: [(ESCALATION - 1, []), (1, ["table.high"])],
    # unread at 24 h: joins the digest, sent 1 min later
    Tier.MEDIUM: [(DAY, []), (59, []), (1, ["digest"])],
    Tier.LOW: [],
    Tier.SYSTEM: [],
}


# tier → the steps the workflow executor ran after the first send (herald_workflow_runs)
EXECUTOR_RUNS: dict[Tier, list[tuple[int, str, str]]] = {
    Tier.CRITICAL: [],
    Tier.HIGH: [(2, "escalate", "email")],
    Tier.MEDIUM: [(2, "digest", "joined")],
    Tier.LOW: [],
    Tier.SYSTEM: [],
}


@pytest.mark.parametrize("tier", list(Tier))
async def test_unconfirmed(h: Harness, tier: Tier) -> None:
    user, nid = await _first_send(h, tier)
    for seconds, emails in UNCONFIRMED[tier]:
        await h.advance(seconds)
        assert await _emails_to(h, user) == emails, seconds
    expected = UNCONFIRMED[tier][-1][1] if UNCONFIRMED[tier] else []
    await h.advance(3 * DAY)
    assert await _emails_to(h, user) == expected, "and nothing more, ever"
    runs = await h.pool.fetch(
        "SELECT step, kind, result FROM herald_workflow_runs WHERE notification_id = $1", nid
    )
    state = await h.pool.fetchval("SELECT state FROM herald_workflows WHERE notification_id = $1", nid)
    assert [tuple(r) for r in runs] == EXECUTOR_RUNS[tier]  # the executor ran the preset's step, once
    assert state == ("done" if EXECUTOR_RUNS[tier] else None)


@pytest.mark.parametrize("tier", list(Tier))
async def test_confirmed_before_the_delay(h: Harness, tier: Tier) -> None:
    user, nid = await _first_send(h, tier)
    h.clock.advance(ESCALATION / 2)
    await h.feed(Receipt(nid, user, ReceiptStatus.READ, at=h.clock.now(), channel=FIRST[tier]))
    if tier is Tier.MEDIUM:  # read in the inbox, which is what the digest looks at
        await h.pool.execute("UPDATE herald_inbox SET read_at = $2 WHERE user_id = $1", user, h.clock.now())
    await h.advance(3 * DAY)
    assert await _emails_to(h, user) == []
