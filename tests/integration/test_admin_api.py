"""The admin API against a real server over the dev stack: the auth matrix (every admin route ×
{no key, user token, wrong scope, other tenant, revoked, good}), recipients, GDPR erasure with
counts, POST /v1/events end to end on Kafka, and keys never reaching the users' routes."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.keys import Scope
from consumers.api.admin.settings import AdminSettings
from consumers.devstack import DevStack
from consumers.scheduler.store import Scheduler, Timer
from schemas.codec import default_codec
from schemas.models import DomainEvent
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings
from tests.kafka_helpers import wait_for_records

PROBLEM = "application/problem+json"


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    settings = make_settings(
        stack,
        api=api_settings(),
        admin=AdminSettings(
            key_pepper=secrets.token_urlsafe(32),
            key_cache_ttl_s=0.0,
            event_dedupe_prefix=f"t:ev:{uuid.uuid4().hex[:8]}",
        ),
    )
    async with running_api(settings) as running:
        yield running


def keys(api: RunningApi) -> KeyStore:
    assert api.ctx.admin is not None and api.ctx.admin.keys is not None
    return api.ctx.admin.keys


async def key(api: RunningApi, *scopes: Scope, tenant: str | None = None) -> dict[str, str]:
    new = await keys(api).create(f"test-{uuid.uuid4().hex[:6]}", scopes, tenant)
    return {"Authorization": f"Bearer {new.token}"}


def rid() -> str:
    return f"r-{uuid.uuid4().hex[:12]}"


# Every admin route, the scope it needs, and a request that succeeds with a good key.
def routes(ident: str) -> list[tuple[str, str, Scope, Any, int]]:
    return [
        ("PUT", f"/v1/recipients/{ident}", Scope.RECIPIENTS_WRITE, {"email": "a@example.com"}, 201),
        ("PATCH", f"/v1/recipients/{ident}", Scope.RECIPIENTS_WRITE, {"locale": "pt-BR"}, 200),
        ("GET", f"/v1/recipients/{ident}", Scope.RECIPIENTS_READ, None, 200),
        (
            "POST",
            "/v1/events",
            Scope.EMIT,
            {"type": "payment_receipt", "user_id": ident, "tenant": "acme"},
            202,
        ),
        ("DELETE", f"/v1/recipients/{ident}", Scope.RECIPIENTS_WRITE, None, 200),
        ("POST", "/v1/recipients:batch", Scope.RECIPIENTS_WRITE, {"recipients": [{"id": f"{ident}-b"}]}, 200),
        ("PUT", f"/v1/topics/{ident}", Scope.TOPICS_WRITE, {"name": "Watchers"}, 201),
        ("GET", f"/v1/topics/{ident}", Scope.TOPICS_WRITE, None, 200),
        ("POST", f"/v1/topics/{ident}/subscribers", Scope.TOPICS_WRITE, {"user_ids": ["a", "b"]}, 200),
        ("GET", f"/v1/topics/{ident}/subscribers", Scope.TOPICS_WRITE, None, 200),
        ("DELETE", f"/v1/topics/{ident}/subscribers", Scope.TOPICS_WRITE, {"user_ids": ["a"]}, 200),
        ("DELETE", f"/v1/topics/{ident}", Scope.TOPICS_WRITE, None, 204),
    ]


_WRONG_SCOPE = {
    Scope.RECIPIENTS_WRITE: Scope.RECIPIENTS_READ,
    Scope.RECIPIENTS_READ: Scope.EMIT,
    Scope.EMIT: Scope.RECIPIENTS_WRITE,
    Scope.TOPICS_WRITE: Scope.RECIPIENTS_WRITE,
}


async def test_auth_matrix(api: RunningApi) -> None:
    ident = rid()
    revoked_key = await keys(api).create("gone", (Scope.ADMIN,), None)
    assert await keys(api).revoke(revoked_key.key_id)
    revoked = {"Authorization": f"Bearer {revoked_key.token}"}
    for method, path, scope, body, ok in routes(ident):
        cases: list[tuple[str, dict[str, str], int]] = [
            ("no key", {}, 401),
            ("user token", api.auth("someone"), 401),
            ("malformed key", {"Authorization": "Bearer hrk_nothing"}, 401),
            ("revoked", revoked, 401),
            ("wrong scope", await key(api, _WRONG_SCOPE[scope], tenant="acme"), 403),
            ("other tenant", {**await key(api, scope, tenant="globex"), "Herald-Tenant": "acme"}, 403),
        ]
        for name, headers, status in cases:
            r = await api.client.request(method, path, json=body, headers=headers)
            assert r.status_code == status, (method, path, name, r.text)
            assert r.headers["content-type"] == PROBLEM, (method, path, name)
            problem = r.json()
            assert problem["status"] == status and problem["title"] and problem["type"].startswith("https://")
            if status == 401:
                assert r.headers["www-authenticate"].startswith('Bearer realm="herald-admin"')
            assert "hrk_" not in r.text  # a key is never echoed
        good = await api.client.request(method, path, json=body, headers=await key(api, scope, tenant="acme"))
        assert good.status_code == ok, (method, path, good.text)


async def test_a_tenant_bound_key_sees_only_its_tenant(api: RunningApi) -> None:
    # The same id in two tenants is two recipients: each key sees, changes and erases its own.
    ident = rid()
    acme = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    globex = await key(api, Scope.RECIPIENTS_WRITE, tenant="globex")
    unbound = await key(api, Scope.RECIPIENTS_WRITE)
    body = {
        "email": "a@acme.example",
        "preferences": [{"category": "c", "channel": "email", "enabled": False}],
    }
    assert (await api.client.put(f"/v1/recipients/{ident}", json=body, headers=acme)).status_code == 201
    assert (await api.client.get(f"/v1/recipients/{ident}", headers=globex)).status_code == 404
    assert (await api.client.patch(f"/v1/recipients/{ident}", json={}, headers=globex)).status_code == 404
    assert (
        await api.client.get(f"/v1/recipients/{ident}", headers=unbound)
    ).status_code == 404  # default tenant
    r = await api.client.put(f"/v1/recipients/{ident}", json={"email": "a@globex.example"}, headers=globex)
    assert r.status_code == 201 and r.json()["tenant"] == "globex" and r.json()["preferences"] == []
    r = await api.client.get(f"/v1/recipients/{ident}", headers={**unbound, "Herald-Tenant": "acme"})
    assert (
        r.status_code == 200 and r.json()["email"] == "a@acme.example" and len(r.json()["preferences"]) == 1
    )
    await api.add_rows(ident, 2, tenant="acme")
    await api.add_rows(ident, 1, tenant="globex")
    r = await api.client.delete(f"/v1/recipients/{ident}", headers=globex)
    assert r.status_code == 200
    assert r.json()["removed"]["recipient"] == 1 and r.json()["removed"]["inbox"] == 1
    r = await api.client.get(f"/v1/recipients/{ident}", headers=acme)
    assert r.status_code == 200 and r.json()["tenant"] == "acme" and r.json()["email"] == "a@acme.example"
    count = "SELECT count(*) FROM herald_inbox WHERE user_id = $1 AND tenant = $2"
    assert await api.ctx.pool.fetchval(count, ident, "acme") == 2
    assert await api.ctx.pool.fetchval(count, ident, "globex") == 0


async def test_other_tenants_data_is_invisible_on_every_admin_route(api: RunningApi) -> None:
    # "Other tenant" beyond the 403 of the matrix: a key bound to globex, naming no tenant, on
    # acme's recipient and topic, gets what it would for an id that does not exist.
    ident = rid()
    acme_r = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme")
    acme_t = await key(api, Scope.TOPICS_WRITE, tenant="acme")
    assert (await api.client.put(f"/v1/recipients/{ident}", json={}, headers=acme_r)).status_code == 201
    assert (await api.client.put(f"/v1/topics/{ident}", json={}, headers=acme_t)).status_code == 201
    subs = {"user_ids": ["a"]}
    assert (
        await api.client.post(f"/v1/topics/{ident}/subscribers", json=subs, headers=acme_t)
    ).status_code == 200
    cases: list[tuple[str, str, Scope, Any, int]] = [
        ("GET", f"/v1/recipients/{ident}", Scope.RECIPIENTS_READ, None, 404),
        ("PATCH", f"/v1/recipients/{ident}", Scope.RECIPIENTS_WRITE, {"locale": "de"}, 404),
        ("GET", f"/v1/topics/{ident}", Scope.TOPICS_WRITE, None, 404),
        ("GET", f"/v1/topics/{ident}/subscribers", Scope.TOPICS_WRITE, None, 404),
        ("POST", f"/v1/topics/{ident}/subscribers", Scope.TOPICS_WRITE, {"user_ids": ["b"]}, 404),
        ("DELETE", f"/v1/topics/{ident}/subscribers", Scope.TOPICS_WRITE, subs, 404),
        ("DELETE", f"/v1/topics/{ident}", Scope.TOPICS_WRITE, None, 404),
        ("DELETE", f"/v1/recipients/{ident}", Scope.RECIPIENTS_WRITE, None, 200),  # erases globex's (none)
    ]
    for method, path, scope, body, status in cases:
        r = await api.client.request(method, path, json=body, headers=await key(api, scope, tenant="globex"))
        assert r.status_code == status, (method, path, r.text)
    r = await api.client.get(f"/v1/recipients/{ident}", headers=acme_r)
    assert r.status_code == 200 and r.json()["locale"] == "en"
    r = await api.client.get(f"/v1/topics/{ident}/subscribers", headers=acme_t)
    assert r.json()["user_ids"] == ["a"]


async def test_keys_never_reach_user_routes(api: RunningApi) -> None:
    r = await api.client.get("/v1/inbox", headers=await key(api, Scope.ADMIN))
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    assert "service API key" in r.json()["detail"]


async def test_last_use_is_recorded_in_batches(api: RunningApi) -> None:
    new = await keys(api).create("lastuse", (Scope.RECIPIENTS_READ,), None)
    headers = {"Authorization": f"Bearer {new.token}"}
    for _ in range(3):
        await api.client.get(f"/v1/recipients/{rid()}", headers=headers)
    before = await api.ctx.pool.fetchval(
        "SELECT last_used_at FROM herald_api_keys WHERE key_id = $1", new.key_id
    )
    assert before is None  # no write per request
    assert await keys(api).flush_last_used() >= 1
    after = await api.ctx.pool.fetchval(
        "SELECT last_used_at FROM herald_api_keys WHERE key_id = $1", new.key_id
    )
    assert after is not None
    stored = await api.ctx.pool.fetchval(
        "SELECT secret_hash FROM herald_api_keys WHERE key_id = $1", new.key_id
    )
    assert new.secret.encode() not in bytes(stored)


async def test_put_patch_get_validate_and_merge(api: RunningApi) -> None:
    ident, h = rid(), await key(api, Scope.RECIPIENTS_WRITE)
    body = {
        "email": "ana@example.com",
        "phone": "+351 912 345 678",
        "locale": "pt-PT",
        "timezone": "Europe/Lisbon",
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "preferences": [{"category": "marketing", "channel": "email", "enabled": False}],
        "properties": {"plan": "pro", "seats": 3},
    }
    r = await api.client.put(f"/v1/recipients/{ident}", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["phone"] == "+351912345678"
    r = await api.client.patch(
        f"/v1/recipients/{ident}",
        json={
            "properties": {"seats": None, "team": "x"},
            "preferences": [{"category": "a", "channel": "sms", "enabled": True}],
        },
        headers=h,
    )
    got = r.json()
    assert r.status_code == 200 and got["properties"] == {"plan": "pro", "team": "x"}
    assert got["email"] == "ana@example.com" and got["timezone"] == "Europe/Lisbon"
    assert len(got["preferences"]) == 2 and got["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert (await api.client.put(f"/v1/recipients/{ident}", json=body, headers=h)).status_code == 200

    bad = {
        "phone": {"phone": "+1 555 0100"},  # the right shape, not a valid number
        "timezone": {"timezone": "UTC+3"},
        "email": {"email": "not-an-email"},
        "properties": {"properties": {"blob": "x" * 10_000}},
        "nickname": {"nickname": "extra fields are refused"},
    }
    for field, payload in bad.items():
        r = await api.client.put(f"/v1/recipients/{ident}", json=payload, headers=h)
        assert r.status_code == 422, (field, r.text)
        assert any(field in e["loc"] for e in r.json()["errors"]), (field, r.json())


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
    assert removed["inbox"] == 3 and removed["pending_steps"] == 2
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


async def test_post_events_produces_like_the_emitter(api: RunningApi) -> None:
    h = await key(api, Scope.EMIT, tenant="acme")
    ident, event_id = rid(), str(uuid.uuid4())
    one = {"type": "payment_receipt", "user_id": ident, "event_id": event_id, "data": {"amount": "1.00"}}
    r = await api.client.post("/v1/events", json=one, headers=h)
    assert r.status_code == 202, r.text
    assert r.json() == {"events": [{"event_id": event_id, "duplicate": False}]}
    again = await api.client.post("/v1/events", json=one, headers=h)
    assert again.json() == {"events": [{"event_id": event_id, "duplicate": True}]}

    batch = [{"type": "payment_receipt", "user_id": f"{ident}-{i}"} for i in range(20)]
    r = await api.client.post("/v1/events", json=batch, headers=h)
    assert r.status_code == 202 and len(r.json()["events"]) == 20

    records = await wait_for_records(api.settings, api.ctx.topics.events, 21)
    codec = default_codec()
    (first,) = [r for r in records if r.key == ident.encode()]  # keyed by user, as the emitter does
    event = codec.decode(first.value, DomainEvent)
    assert event.event_id == event_id and event.tenant == "acme" and event.data() == {"amount": "1.00"}
    assert len(records) == 21  # the repeat was not sent again


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        ({"type": "payment_reciept", "user_id": "u"}, "body.type", "payment_receipt"),
        ({"type": "payment_receipt"}, "body", "exactly one of user_id and topic"),
        ({"type": "payment_receipt", "user_id": "u", "data": [1]}, "body.data", ""),
        (
            [{"type": "payment_receipt", "user_id": "u"}, {"type": "payment_receipt", "user_id": 5}],
            "body[1].user_id",
            "",
        ),
        ([], "body", "empty"),
        ({"type": "payment_receipt", "user_id": "u\u0000x"}, "body.user_id", "control character"),
        (
            [{"type": "payment_receipt", "user_id": "u"}, {"type": "payment_receipt", "user_id": "x" * 300}],
            "body[1].user_id",
            "> 256",
        ),
    ],
)
async def test_post_events_names_the_offending_field(api: RunningApi, body: Any, loc: str, text: str) -> None:
    r = await api.client.post("/v1/events", json=body, headers=await key(api, Scope.EMIT))
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["loc"] == loc and text in e["msg"] for e in errors), errors


async def test_post_events_refuses_another_tenant(api: RunningApi) -> None:
    h = await key(api, Scope.EMIT, tenant="acme")
    r = await api.client.post(
        "/v1/events", json={"type": "payment_receipt", "user_id": "u", "tenant": "globex"}, headers=h
    )
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM


async def test_topics_subscribe_and_page_by_keyset(api: RunningApi) -> None:
    h, topic = await key_headers(api), rid()
    assert (await api.client.put(f"/v1/topics/{topic}", json={}, headers=h)).status_code == 201
    assert (await api.client.put(f"/v1/topics/{topic}", json={"name": "n"}, headers=h)).status_code == 200
    users = [f"u{i:04d}" for i in range(250)]
    r = await api.client.post(f"/v1/topics/{topic}/subscribers", json={"user_ids": users}, headers=h)
    assert r.json() == {"added": 250}
    r = await api.client.post(f"/v1/topics/{topic}/subscribers", json={"user_ids": users[:10]}, headers=h)
    assert r.json() == {"added": 0}
    r = await api.client.request(
        "DELETE", f"/v1/topics/{topic}/subscribers", json={"user_ids": users[:5]}, headers=h
    )
    assert r.json() == {"removed": 5}
    seen, after = [], ""
    while True:
        page = (
            await api.client.get(
                f"/v1/topics/{topic}/subscribers", params={"after": after, "limit": 100}, headers=h
            )
        ).json()
        seen += page["user_ids"]
        if page["next_cursor"] is None:
            break
        after = page["next_cursor"]
    assert seen == users[5:]
    bad_cursor: dict[str, str | int] = {"after": "u0\x00", "limit": 10}  # a NUL would reach SQL: 422
    r = await api.client.get(f"/v1/topics/{topic}/subscribers", params=bad_cursor, headers=h)
    assert r.status_code == 422 and "after" in r.text, r.text
    other = await key(api, Scope.TOPICS_WRITE, tenant="globex")
    assert (await api.client.get(f"/v1/topics/{topic}", headers=other)).status_code == 404
    too_many = {"user_ids": [f"x{i}" for i in range(1001)]}
    assert (
        await api.client.post(f"/v1/topics/{topic}/subscribers", json=too_many, headers=h)
    ).status_code == 422
    r = await api.client.post(
        "/v1/events", json={"type": "marketing.weekly", "topic": topic}, headers=await key(api, Scope.EMIT)
    )
    assert r.status_code == 202


async def key_headers(api: RunningApi) -> dict[str, str]:
    return await key(api, Scope.TOPICS_WRITE)


async def test_batch_answers_per_row(api: RunningApi) -> None:
    h, p = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme"), rid()
    taken = rid()  # globex's id: in acme, the same id is another recipient
    assert (
        await api.client.put(
            f"/v1/recipients/{taken}",
            json={},
            headers=await key(api, Scope.RECIPIENTS_WRITE, tenant="globex"),
        )
    ).status_code == 201
    rows = [{"id": f"{p}-{i}", "email": f"u{i}@example.com"} for i in range(998)]
    rows.append({"id": f"{p}-bad", "timezone": "GMT+1"})
    rows.append({"id": taken})
    r = await api.client.post("/v1/recipients:batch", json={"recipients": rows}, headers=h)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results].count("created") == 999
    assert results[998]["status"] == "invalid" and results[998]["errors"][0]["loc"] == "timezone"
    assert results[999] == {"index": 999, "id": taken, "status": "created", "errors": None}
    again = await api.client.post("/v1/recipients:batch", json={"recipients": rows[:2]}, headers=h)
    assert [x["status"] for x in again.json()["results"]] == ["updated", "updated"]
    too_many = {"recipients": [{"id": f"x{i}"} for i in range(1001)]}
    assert (await api.client.post("/v1/recipients:batch", json=too_many, headers=h)).status_code == 422


async def test_without_a_pepper_the_admin_routes_are_not_served(stack: DevStack) -> None:
    async with running_api(make_settings(stack, api=api_settings())) as bare:
        r = await bare.client.get("/v1/recipients/u1", headers={"Authorization": "Bearer hrk_x"})
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        assert "/v1/events" not in (await bare.client.get("/openapi.json")).json()["paths"]
