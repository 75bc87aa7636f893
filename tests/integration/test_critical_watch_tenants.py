"""The critical watch is per tenant: the same user id in two tenants has two watches, a receipt
from the other tenant's user reaches neither, and erasure in one tenant leaves the other's."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from consumers.api.admin.recipients_pg import RecipientStore
from consumers.devstack import DevStack
from consumers.infra.keys import notification_id
from consumers.infra.settings import FallbackSettings
from consumers.runtime.kafka import make_producer
from schemas.models import Channel, ChannelMessage, OutcomeStatus, Receipt, ReceiptStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import Harness, channel_message, outcome_of, past_clock

AFTER = 120.0


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, pg_pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    settings = make_settings(stack, fallback=FallbackSettings(critical_check_after_s=AFTER))
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    harness = Harness(settings, pg_pool, producer, past_clock())
    await harness.setup()
    yield harness
    await harness.cleanup()
    await producer.stop()


def _critical(h: Harness, user: str, tenant: str) -> ChannelMessage:
    m = channel_message(
        user, Channel.PUSH, Tier.CRITICAL, event_type="security_alert", occurred_at=h.clock.now()
    )
    return dataclasses.replace(m, tenant=tenant, notification_id=notification_id(m.event_id, user, tenant))


async def _watch(h: Harness, user: str) -> dict[str, tuple[str | None, str | None]]:
    rows = await h.pool.fetch(
        "SELECT notification_id, tenant, verdict FROM herald_critical_watch WHERE user_id = $1", user
    )
    return {r["notification_id"]: (r["tenant"], r["verdict"]) for r in rows}


async def test_the_same_user_in_two_tenants_has_two_watches_and_a_foreign_receipt_reaches_neither(
    h: Harness,
) -> None:
    bob = f"bob-{uuid.uuid4().hex[:8]}"
    acme, globex = _critical(h, bob, "acme"), _critical(h, bob, "globex")
    await h.feed(*(outcome_of(m, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now()) for m in (acme, globex)))
    assert await _watch(h, bob) == {
        acme.notification_id: ("acme", None),
        globex.notification_id: ("globex", None),
    }
    # globex's bob posts "delivered" for acme's bob's alert (ids are computable): not acme's bob
    forged = Receipt(
        acme.notification_id, bob, ReceiptStatus.DELIVERED, at=h.clock.now(), source="api", tenant="globex"
    )
    await h.feed(forged)
    await h.advance(AFTER)
    assert await _watch(h, bob) == {
        acme.notification_id: ("acme", "undelivered"),
        globex.notification_id: ("globex", "undelivered"),
    }


async def test_erasure_in_one_tenant_removes_its_watch_and_check_and_leaves_the_others(h: Harness) -> None:
    bob = f"bob-{uuid.uuid4().hex[:8]}"
    acme, globex = _critical(h, bob, "acme"), _critical(h, bob, "globex")
    await h.feed(*(outcome_of(m, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now()) for m in (acme, globex)))
    # bob is in use in both tenants (recipient rows): the by-user-id-only rules would keep both
    for tenant in ("acme", "globex"):
        await h.pool.execute("INSERT INTO herald_recipients (user_id, tenant) VALUES ($1, $2)", bob, tenant)
    removed = await RecipientStore(h.pool).erase("acme", bob)
    assert removed["critical_watch"] == 1
    assert removed["pending_steps"] == 1  # acme's check, which would find no row
    assert await _watch(h, bob) == {globex.notification_id: ("globex", None)}
    checks = await h.pool.fetch(
        "SELECT data->>'notification_id' AS n FROM herald_timers WHERE kind = 'critical_check' "
        "AND state = 'pending' AND data->>'notification_id' = ANY($1::text[])",
        [acme.notification_id, globex.notification_id],
    )
    assert [r["n"] for r in checks] == [globex.notification_id]


async def test_a_check_written_without_its_tenant_takes_its_users_receipt(h: Harness) -> None:
    # During a rolling upgrade a fallback of the previous version inserts the check without a
    # tenant: the column's default. NULL (unknown) is compared with the user only; a default of
    # '' judged acme's own v2 receipt foreign and dropped it (a false page).
    bob = f"bob-{uuid.uuid4().hex[:8]}"
    acme = _critical(h, bob, "acme")
    await h.feed(outcome_of(acme, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now()))
    await h.pool.execute(
        "UPDATE herald_critical_watch SET tenant = DEFAULT WHERE notification_id = $1", acme.notification_id
    )
    own = Receipt(
        acme.notification_id, bob, ReceiptStatus.DELIVERED, at=h.clock.now(), source="api", tenant="acme"
    )
    await h.feed(own)
    await h.advance(AFTER)
    assert await _watch(h, bob) == {acme.notification_id: (None, "delivered")}


async def test_erasure_removes_a_check_of_unknown_tenant_unless_the_id_is_shared(h: Harness) -> None:
    bob, ann = f"bob-{uuid.uuid4().hex[:8]}", f"ann-{uuid.uuid4().hex[:8]}"
    for user in (bob, ann):
        m = _critical(h, user, "acme")
        await h.feed(outcome_of(m, OutcomeStatus.FAILED_PERMANENT, at=h.clock.now()))
    await h.pool.execute(
        "UPDATE herald_critical_watch SET tenant = NULL WHERE user_id = ANY($1::text[])", [bob, ann]
    )
    await h.pool.execute("INSERT INTO herald_recipients (user_id, tenant) VALUES ($1, 'globex')", ann)
    assert (await RecipientStore(h.pool).erase("acme", bob))["critical_watch"] == 1
    assert (await RecipientStore(h.pool).erase("acme", ann))["critical_watch"] == 0  # may be globex's
    assert len(await _watch(h, ann)) == 1
