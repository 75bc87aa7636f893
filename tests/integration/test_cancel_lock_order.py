"""A cancellation and a poller's batch on the same workflows lock them in one order, so they
cannot deadlock (PostgreSQL would abort one: an outage retried after a back-off). Real servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as redis_asyncio

from consumers.devstack import DevStack
from consumers.workflow.cancel import Canceller
from consumers.workflow.preset_batch import _LOCK_ALL
from schemas.codec import default_codec
from schemas.models import DomainEvent, OutcomeStatus, Tier
from tests.pg_helpers import waits_for_a_lock
from tests.waiting import until

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def _pool(stack: DevStack, name: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        stack.database_url, min_size=1, max_size=2, server_settings={"application_name": name}
    )
    assert pool is not None
    return pool


async def test_a_cancel_and_a_poll_batch_on_the_same_workflows_do_not_deadlock(
    stack: DevStack, pg_pool: asyncpg.Pool, redis_client: redis_asyncio.Redis
) -> None:
    key = f"order-{NOW.timestamp():.0f}-{id(pg_pool)}"
    nids = [f"{key}-n{i}" for i in range(3)]
    # Stored n2 first: a scan in storage order meets n2 before n0 and n1, the poller's order is n0, n1, n2.
    for nid in [nids[2], nids[0], nids[1]]:
        await pg_pool.execute(
            "INSERT INTO herald_workflows (notification_id, event_id, user_id, route, cancel_key, event, "
            "state, created_at, updated_at) VALUES ($1, $1, 'u1', 'wf.order', $2, $3, 'waiting', $4, $4)",
            nid,
            key,
            default_codec().encode(DomainEvent(nid, "wf.order", NOW, "u1", cancel_key=key)),
            NOW,
        )
    holder, poller_pool, cancel_pool = (
        await _pool(stack, "order-holder"),
        await _pool(stack, "order-poller"),
        await _pool(stack, "order-cancel"),
    )
    canceller = Canceller(
        cancel_pool, redis_client, default_codec(), lambda _type: Tier.HIGH, namespace=f"order-{id(pg_pool)}"
    )
    try:
        async with holder.acquire() as h, h.transaction():
            # The third party holds n1: the poller takes n0 and waits for n1.
            await h.execute("SELECT 1 FROM herald_workflows WHERE notification_id = $1 FOR UPDATE", nids[1])

            async def poll() -> None:
                async with poller_pool.acquire() as conn, conn.transaction():
                    await conn.fetch(_LOCK_ALL, nids)

            polling = asyncio.ensure_future(poll())
            await until(
                lambda: waits_for_a_lock(pg_pool, "order-poller"), what="the poller waits for n1", timeout=10
            )
            # The cancel starts while the poller holds n0: in storage order it would take n2, then wait
            # for n0; once n1 is free the poller would wait for n2: a cycle.
            cancelling = asyncio.ensure_future(canceller.cancel(key, NOW))
            await until(
                lambda: waits_for_a_lock(pg_pool, "order-cancel"), what="the cancel waits", timeout=10
            )
        _, outcomes = await asyncio.wait_for(asyncio.gather(polling, cancelling), timeout=30)
        assert sorted(o.event_id for o in outcomes) == nids
        assert {o.status for o in outcomes} == {OutcomeStatus.CANCELLED}
        states = await pg_pool.fetch(
            "SELECT state FROM herald_workflows WHERE notification_id = ANY($1::text[])", nids
        )
        assert [r["state"] for r in states] == ["cancelled"] * 3
    finally:
        for pool in (holder, poller_pool, cancel_pool):
            await pool.close()
        await pg_pool.execute("DELETE FROM herald_workflows WHERE notification_id = ANY($1::text[])", nids)


async def test_a_cancel_waits_for_a_digest_being_sent_and_does_not_report_its_items(
    stack: DevStack, pg_pool: asyncpg.Pool, redis_client: redis_asyncio.Redis
) -> None:
    # A digest's fire locks its row, reads its items, sends them and deletes them as it marks the
    # digest sent. A cancel that deleted an item in between would report it cancelled while the
    # digest lists it: the cancel takes the digest's lock first, and finds the item gone.
    key = f"digest-{NOW.timestamp():.0f}-{id(pg_pool)}"
    nid = f"{key}-n0"
    digest_id = await pg_pool.fetchval(
        "INSERT INTO herald_workflow_digests (tenant, user_id, route, window_start, send_at) "
        "VALUES ('', $1, 'wf.digest', $2, $2) RETURNING id",
        key,
        NOW,
    )
    event = default_codec().encode(DomainEvent(nid, "wf.digest", NOW, key, cancel_key=key))
    await pg_pool.execute(
        "INSERT INTO herald_workflow_digest_items (notification_id, digest_id, cancel_key, event, joined_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        nid,
        digest_id,
        key,
        event,
        NOW,
    )
    fire, cancel_pool = await _pool(stack, "digest-fire"), await _pool(stack, "digest-cancel")
    canceller = Canceller(
        cancel_pool, redis_client, default_codec(), lambda _type: Tier.MEDIUM, namespace=f"d-{id(pg_pool)}"
    )
    try:
        async with fire.acquire() as f, f.transaction():
            await f.execute("SELECT 1 FROM herald_workflow_digests WHERE id = $1 FOR UPDATE", digest_id)
            assert await f.fetchval(
                "SELECT count(*) FROM herald_workflow_digest_items WHERE digest_id = $1", digest_id
            )
            cancelling = asyncio.ensure_future(canceller.cancel(key, NOW))
            await until(
                lambda: waits_for_a_lock(pg_pool, "digest-cancel"), what="the cancel waits", timeout=10
            )
            await f.execute("DELETE FROM herald_workflow_digest_items WHERE digest_id = $1", digest_id)
            await f.execute("UPDATE herald_workflow_digests SET state = 'sent' WHERE id = $1", digest_id)
        outcomes = await asyncio.wait_for(cancelling, timeout=30)
        assert [o.notification_id for o in outcomes] == []
    finally:
        for pool in (fire, cancel_pool):
            await pool.close()
        await pg_pool.execute("DELETE FROM herald_workflow_digests WHERE id = $1", digest_id)
