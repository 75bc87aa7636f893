"""The admin API's GDPR erasure (DELETE /v1/recipients/{id}) against a real server: everything of
the recipient removed and counted, its delivery state in one tenant gone, the other tenants' kept."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from consumers.api.admin.keys import Scope
from consumers.api.admin.recipients_pg import _SHARED, _SHARED_CHECKS
from consumers.devstack import DevStack
from consumers.scheduler.retries import KIND_RETRY
from consumers.scheduler.store import Scheduler, Timer, publish_timer
from tests.admin_helpers import key, rid, running_admin_api
from tests.api_helpers import RunningApi
from tests.waiting import until


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_admin_api(stack) as running:
        yield running


async def test_delete_erases_everything_and_counts_it(api: RunningApi) -> None:
    ident, h = rid(), await key(api, Scope.RECIPIENTS_WRITE)
    other = rid()
    body = {
        "preferences": [
            {"category": "c1", "channel": "email", "enabled": False},
            {"category": "c2", "channel": "sms", "enabled": True},
        ]
    }
    assert (await api.client.put(f"/v1/recipients/{ident}", json=body, headers=h)).status_code == 201
    await api.ctx.devices.register(ident, f"tok-{ident}")
    await api.ctx.pool.execute("INSERT INTO herald_topics (key) VALUES ($1)", f"t-{ident}")
    await api.ctx.pool.execute(  # kept, the next broadcast fanned a copy out to the erased id
        "INSERT INTO herald_topic_subscribers (topic, user_id) VALUES ($1, $2), ($1, $3)",
        f"t-{ident}",
        ident,
        other,
    )
    rows = await api.add_rows(ident, 3)
    await api.add_rows(other, 1)
    timers = Scheduler(api.ctx.pool, namespace="admin-erasure")  # erasure clears every namespace
    due = datetime.now(UTC) + timedelta(hours=1)
    await timers.arm(
        [
            Timer(
                key=f"t1-{ident}", kind="publish", due_at=due, topic="x", msg_key=ident.encode(), payload=b"p"
            ),
            Timer(key=f"t2-{ident}", kind="digest_item", due_at=due, data={"user_id": ident}),
            Timer(
                key=f"t3-{other}", kind="publish", due_at=due, topic="x", msg_key=other.encode(), payload=b"p"
            ),
        ]
    )
    now = datetime.now(UTC)
    for user in (ident, other):  # workflow state keeps the event (and a preset's sent message)
        await api.ctx.pool.execute(
            "INSERT INTO herald_workflows (notification_id, event_id, user_id, route, event, created_at, "
            "updated_at) VALUES ($1, $1, $2, 'preset:high', 'e'::bytea, $3, $3)",
            f"n-{user}",
            user,
            now,
        )
        await api.ctx.pool.execute(
            "INSERT INTO herald_workflow_runs (notification_id, step, kind, result, ran_at) "
            "VALUES ($1, 1, 'escalate', 'email', $2)",
            f"n-{user}",
            now,
        )
    r = await api.client.delete(f"/v1/recipients/{ident}", headers=h)
    assert r.status_code == 200, r.text
    removed = r.json()["removed"]
    assert removed["workflows"] == 1 and removed["workflow_runs"] == 1
    left = "SELECT count(*) FROM herald_workflow_runs WHERE notification_id = $1"
    assert await api.ctx.pool.fetchval(left, f"n-{ident}") == 0
    assert await api.ctx.pool.fetchval(left, f"n-{other}") == 1
    assert removed["recipient"] == 1 and removed["devices"] == 1 and removed["preferences"] == 2
    assert removed["inbox"] == 3 and removed["pending_steps"] == 2 and removed["topic_subscriptions"] == 1
    subscribers = "SELECT array_agg(user_id) FROM herald_topic_subscribers WHERE topic = $1"
    assert await api.ctx.pool.fetchval(subscribers, f"t-{ident}") == [other]
    pool = api.ctx.pool
    assert await pool.fetchval("SELECT count(*) FROM herald_inbox WHERE id = ANY($1::uuid[])", rows) == 0
    assert await pool.fetchval("SELECT count(*) FROM herald_timers WHERE key = $1", f"t3-{other}") == 1
    assert await pool.fetchval("SELECT count(*) FROM herald_inbox WHERE user_id = $1", other) == 1
    again = await api.client.delete(f"/v1/recipients/{ident}", headers=h)
    assert again.status_code == 200 and set(again.json()["removed"].values()) == {0}


async def _delivery_state(api: RunningApi, user: str, tenant: str) -> list[Timer]:
    """The user's digest, workflow, workflow digest and throttle rows in ``tenant``, and the
    timers that name them (returned, armed by the caller)."""
    pool, now, nid = api.ctx.pool, datetime.now(UTC), f"n-{tenant or 'default'}-{user}"
    (inbox_id,) = await api.add_rows(user, 1, tenant=tenant)
    digest_id = await pool.fetchval(
        "INSERT INTO herald_digests (tenant, user_id, window_start, send_at, idempotency_key) "
        "VALUES ($1, $2, $3, $3, $4) RETURNING id",
        tenant,
        user,
        now,
        f"dg-{nid}",
    )
    await pool.execute(
        "INSERT INTO herald_digest_items (inbox_id, tenant, user_id, notification_id, idempotency_key, event_id, "
        "event_type, joined_at) VALUES ($1, $2, $3, $4, $4, $4, 'comment_reply', $5)",
        inbox_id,
        tenant,
        user,
        nid,
        now,
    )
    await pool.execute(
        "INSERT INTO herald_workflows (notification_id, event_id, user_id, tenant, route, event, created_at, "
        "updated_at) VALUES ($1, $1, $2, $3, 'wf.comment', 'e'::bytea, $4, $4)",
        nid,
        user,
        tenant,
        now,
    )
    await pool.execute(
        "INSERT INTO herald_workflow_runs (notification_id, step, kind, result, ran_at) "
        "VALUES ($1, 0, 'throttle', 'admitted 1/2', $2)",
        nid,
        now,
    )
    wf_digest_id = await pool.fetchval(
        "INSERT INTO herald_workflow_digests (tenant, user_id, route, window_start, send_at) "
        "VALUES ($1, $2, 'wf.comment', $3, $3) RETURNING id",
        tenant,
        user,
        now,
    )
    await pool.execute(
        "INSERT INTO herald_workflow_digest_items (notification_id, digest_id, event, joined_at) "
        "VALUES ($1, $2, 'e'::bytea, $3)",
        nid,
        wf_digest_id,
        now,
    )
    await pool.execute(
        "INSERT INTO herald_workflow_throttle (tenant, user_id, route, window_start, admitted) "
        "VALUES ($1, $2, 'wf.comment', $3, 1)",
        tenant,
        user,
        now,
    )
    due = now + timedelta(hours=1)
    return [
        Timer(key=f"ds-{nid}", kind="digest_send", due_at=due, data={"digest_id": digest_id}),
        Timer(key=f"wd-{nid}", kind="workflow_digest", due_at=due, data={"digest_id": wf_digest_id}),
        Timer(key=f"ws-{nid}", kind="workflow_step", due_at=due, data={"notification_id": nid, "step": 1}),
    ]


async def test_erasure_in_one_tenant_removes_its_delivery_state_and_keeps_the_other_tenants(
    api: RunningApi,
) -> None:
    # The same id is a recipient in acme and in the default tenant ("shared"): digests, workflow
    # state, workflow digests and throttle counters are each tenant's, so acme's go, the default's stay.
    ident = rid()
    acme = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    default = await key(api, Scope.RECIPIENTS_WRITE)
    for h in (acme, default):
        assert (await api.client.put(f"/v1/recipients/{ident}", json={}, headers=h)).status_code == 201
    timers = Scheduler(api.ctx.pool, namespace="admin-erasure-tenants")
    acme_timers = await _delivery_state(api, ident, "acme")
    default_timers = await _delivery_state(api, ident, "")
    assert await timers.arm([*acme_timers, *default_timers]) == 6
    r = await api.client.delete(f"/v1/recipients/{ident}", headers=acme)
    assert r.status_code == 200, r.text
    removed = r.json()["removed"]
    assert {k: removed[k] for k in ("digests", "digest_items", "workflows", "workflow_runs")} == {
        "digests": 1,
        "digest_items": 1,
        "workflows": 1,
        "workflow_runs": 1,
    }
    assert (removed["workflow_digests"], removed["throttle"], removed["pending_steps"]) == (1, 1, 3)
    pool = api.ctx.pool
    for table in (
        "herald_digests",
        "herald_digest_items",
        "herald_workflows",
        "herald_workflow_digests",
        "herald_workflow_throttle",
    ):
        rows = await pool.fetch(f"SELECT tenant FROM {table} WHERE user_id = $1", ident)
        assert [row["tenant"] for row in rows] == [""], table
    left = "SELECT count(*) FROM herald_workflow_digest_items WHERE notification_id = $1"
    assert await pool.fetchval(left, f"n-acme-{ident}") == 0
    assert await pool.fetchval(left, f"n-default-{ident}") == 1
    pending = await pool.fetch(
        "SELECT key FROM herald_timers WHERE key = ANY($1::text[]) AND state = 'pending'",
        [t.key for t in (*acme_timers, *default_timers)],
    )
    assert sorted(row["key"] for row in pending) == sorted(t.key for t in default_timers)
    # The default tenant's erasure takes the rest.
    r = await api.client.delete(f"/v1/recipients/{ident}", headers=default)
    assert r.status_code == 200 and r.json()["removed"]["workflow_digests"] == 1
    assert r.json()["removed"]["pending_steps"] == 3


async def test_erasure_removes_the_users_items_from_another_users_digest(api: RunningApi) -> None:
    # A digest from before migration 240 is keyed by its user alone: acme's bob's item may sit in
    # the default tenant's alice's digest. bob's erasure takes his item; alice's digest and hers stay.
    bob, alice, pool, now = rid(), rid(), api.ctx.pool, datetime.now(UTC)
    acme = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    assert (await api.client.put(f"/v1/recipients/{bob}", json={}, headers=acme)).status_code == 201
    digest_id = await pool.fetchval(
        "INSERT INTO herald_workflow_digests (tenant, user_id, route, window_start, send_at) "
        "VALUES ('', $1, 'wf.comment', $2, $2) RETURNING id",
        alice,
        now,
    )
    for user, tenant in ((bob, "acme"), (alice, "")):
        await pool.execute(
            "INSERT INTO herald_workflows (notification_id, event_id, user_id, tenant, route, event, "
            "created_at, updated_at) VALUES ($1, $1, $2, $3, 'wf.comment', 'e'::bytea, $4, $4)",
            f"n-{user}",
            user,
            tenant,
            now,
        )
        await pool.execute(
            "INSERT INTO herald_workflow_digest_items (notification_id, digest_id, event, joined_at) "
            "VALUES ($1, $2, 'e'::bytea, $3)",
            f"n-{user}",
            digest_id,
            now,
        )
    r = await api.client.delete(f"/v1/recipients/{bob}", headers=acme)
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["workflow_digest_items"] == 1
    items = await pool.fetch(
        "SELECT notification_id FROM herald_workflow_digest_items WHERE digest_id = $1", digest_id
    )
    assert [row["notification_id"] for row in items] == [f"n-{alice}"]


@pytest.mark.parametrize("presence", ["device", "inbox", "subscription"])
async def test_erasure_keeps_state_by_user_id_when_another_tenant_knows_the_id_without_a_recipient(
    api: RunningApi, presence: str
) -> None:
    # bob is acme's recipient; in globex he has no recipient row, only a device, inbox rows or a
    # topic subscription. acme's erasure must leave what names only the user id (globex's
    # scheduled send and retry, receipts, critical check): it may be globex's.
    ident, pool = rid(), api.ctx.pool
    acme = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    assert (await api.client.put(f"/v1/recipients/{ident}", json={}, headers=acme)).status_code == 201
    if presence == "device":
        await api.ctx.devices.register(ident, f"tok-{ident}", tenant="globex")
    elif presence == "inbox":
        await api.add_rows(ident, 1, tenant="globex")
    else:
        await pool.execute("INSERT INTO herald_topics (tenant, key) VALUES ('globex', $1)", f"t-{ident}")
        await pool.execute(
            "INSERT INTO herald_topic_subscribers (tenant, topic, user_id) VALUES ('globex', $1, $2)",
            f"t-{ident}",
            ident,
        )
    now = datetime.now(UTC)
    due = now + timedelta(hours=1)
    kept = [
        Timer(key=f"s-{ident}", kind="publish", due_at=due, topic="x", msg_key=ident.encode(), payload=b"p"),
        Timer(key=f"r-{ident}", kind="digest_item", due_at=due, data={"user_id": ident}),
    ]
    assert await Scheduler(pool, namespace="admin-erasure-shared").arm(kept) == 2
    await pool.execute(
        "INSERT INTO herald_receipts (notification_id, status, user_id, at) VALUES ($1, 'delivered', $2, $3)",
        f"n-{ident}",
        ident,
        now,
    )
    await pool.execute(
        "INSERT INTO herald_critical_watch (notification_id, user_id, event_type, deadline) VALUES ($1, $2, 'x', $3)",
        f"n-{ident}",
        ident,
        due,
    )
    r = await api.client.delete(f"/v1/recipients/{ident}", headers=acme)
    assert r.status_code == 200 and r.json()["removed"]["recipient"] == 1, r.text
    removed = r.json()["removed"]
    assert (removed["pending_steps"], removed["receipts"], removed["critical_watch"]) == (0, 0, 0)
    assert await pool.fetchval("SELECT count(*) FROM herald_receipts WHERE user_id = $1", ident) == 1
    assert await pool.fetchval("SELECT count(*) FROM herald_critical_watch WHERE user_id = $1", ident) == 1
    left = "SELECT count(*) FROM herald_timers WHERE key = ANY($1::text[]) AND state = 'pending'"
    assert await pool.fetchval(left, [t.key for t in kept]) == 2


async def test_erasure_removes_the_tenants_own_user_timers_when_the_id_is_shared(api: RunningApi) -> None:
    # bob is in acme and in globex (an inbox row). acme's scheduled send, quiet-hours deferral and
    # retry for bob are keyed by bob alone; kept, one fires after the erasure and writes a new
    # inbox row for the erased bob. Each says its tenant: acme's go, globex's and an old timer
    # without the field (whose tenant nobody knows) stay.
    ident, pool = rid(), api.ctx.pool
    acme = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    assert (await api.client.put(f"/v1/recipients/{ident}", json={}, headers=acme)).status_code == 201
    await api.add_rows(ident, 1, tenant="globex")
    due = datetime.now(UTC) + timedelta(hours=1)
    user = ident.encode()
    ours = [
        Timer(f"s-{ident}", "publish", due, "x", user, b"p", {"notification_id": "n1", "tenant": "acme"}),
        publish_timer(f"q-{ident}", due, "x", user, b"p", tenant="acme"),
        Timer(f"r-{ident}", KIND_RETRY, due, "x", user, b"p", {"notification_id": "n2", "tenant": "acme"}),
    ]
    theirs = [
        Timer(f"g-{ident}", "publish", due, "x", user, b"p", {"notification_id": "n3", "tenant": "globex"}),
        publish_timer(f"d-{ident}", due, "x", user, b"p", tenant=""),
        publish_timer(f"o-{ident}", due, "x", user, b"p"),  # armed before timers said their tenant
    ]
    assert await Scheduler(pool, namespace="admin-erasure-own").arm(ours + theirs) == 6
    r = await api.client.delete(f"/v1/recipients/{ident}", headers=acme)
    assert r.status_code == 200 and r.json()["removed"]["pending_steps"] == 3, r.text
    left = "SELECT key FROM herald_timers WHERE key = ANY($1::text[]) AND state = 'pending'"
    kept = {row["key"] for row in await pool.fetch(left, [t.key for t in ours + theirs])}
    assert kept == {t.key for t in theirs}


async def test_the_other_tenants_check_probes_indexes_that_start_with_the_user(api: RunningApi) -> None:
    # Without skip scans (PostgreSQL < 18) an index starting with the tenant is read whole for
    # "user_id = $1 AND tenant <> $2", and herald_inbox had no index for it at all. The tables
    # are small here, so the planner is told not to read tables whole: what it still does, it
    # must (no usable index).
    pool = api.ctx.pool
    sql = _SHARED.replace("$1", "'bob'").replace("$2", "'acme'")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql))
    assert "Seq Scan" not in plan, plan
    used = set(re.findall(r"(?:Scan using|Bitmap Index Scan on) (\w+)", plan))
    first = {
        r["idx"]: r["col"]
        for r in await pool.fetch(
            "SELECT c.relname AS idx, a.attname AS col FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE c.relname = ANY($1)",
            sorted(used),
        )
    }
    assert len(used) >= len(_SHARED_CHECKS) - 1 and {first[i] for i in used} == {"user_id"}, plan


class _Stream:
    """An open GET /v1/inbox/stream, its comment lines read in the background until it ends."""

    def __init__(self, api: RunningApi, user_id: str, tenant: str) -> None:
        self.comments: list[str] = []
        self._cm = api.client.stream("GET", "/v1/inbox/stream", headers=api.auth(user_id, tenant), timeout=30)
        self.task: asyncio.Task[None] = asyncio.create_task(self._read())

    async def _read(self) -> None:
        response = await self._cm.__aenter__()
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith(":"):
                self.comments.append(line)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        with contextlib.suppress(Exception):
            await self._cm.__aexit__(None, None, None)


async def test_delete_ends_the_users_open_inbox_streams_in_that_tenant_at_once(api: RunningApi) -> None:
    # The token is good for a day: without the erasure's notice the stream would run that long.
    ident = rid()
    acme = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    streams = [_Stream(api, ident, "acme"), _Stream(api, ident, "acme"), _Stream(api, ident, "")]
    try:

        async def connected() -> bool:
            return all(": connected" in s.comments for s in streams)

        await until(connected, what="three connected streams", timeout=10)
        t0 = time.monotonic()
        assert (await api.client.delete(f"/v1/recipients/{ident}", headers=acme)).status_code == 200
        await asyncio.wait_for(asyncio.gather(streams[0].task, streams[1].task), 5)
        assert time.monotonic() - t0 < 5
        assert [s.comments[-1] for s in streams[:2]] == [": user erased"] * 2
        # The same id in the default tenant is another recipient: its stream goes on.
        await asyncio.sleep(0.5)
        assert not streams[2].task.done() and ": user erased" not in streams[2].comments
    finally:
        for s in streams:
            await s.close()
