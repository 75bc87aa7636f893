"""The admin API against a real server over the dev stack: the auth matrix (every admin route ×
{no key, user token, wrong scope, other tenant, revoked, good}), tenant-bound keys, recipients' PUT,
PATCH and GET, and keys never reaching the users' routes."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from consumers.api.admin.keys import Scope
from consumers.api.admin.recipient_models import RecipientIn
from consumers.api.admin.recipients_pg import RecipientStore
from consumers.devstack import DevStack
from tests.admin_helpers import PROBLEM, key, keys, rid, running_admin_api
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_admin_api(stack) as running:
        yield running


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


async def test_without_a_pepper_the_admin_routes_are_not_served(stack: DevStack) -> None:
    async with running_api(make_settings(stack, api=api_settings())) as bare:
        r = await bare.client.get("/v1/recipients/u1", headers={"Authorization": "Bearer hrk_x"})
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        assert "/v1/events" not in (await bare.client.get("/openapi.json")).json()["paths"]


async def test_bodies_are_limited_and_read_only_after_the_key(api: RunningApi) -> None:
    """A DELETE body counts against the limit like any other; a batch is parsed only for a caller
    whose key checked out (unauthenticated junk is a 401, not a parse)."""
    big = b'{"user_ids": [' + b'"a",' * 300_000 + b'"a"]}'  # 1.2 MB, no key
    r = await api.client.request("DELETE", f"/v1/topics/{rid()}/subscribers", content=big)
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    junk = {"content-type": "application/json"}
    r = await api.client.post("/v1/recipients:batch", content=b"{not json", headers=junk)
    assert r.status_code == 401, r.text
    h = {**junk, **await key(api, Scope.RECIPIENTS_WRITE)}
    r = await api.client.post("/v1/recipients:batch", content=b"{not json", headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body"
    r = await api.client.post("/v1/recipients:batch", json={"recipients": [], "x": 1}, headers=h)
    assert r.status_code == 422
    assert {e["loc"] for e in r.json()["errors"]} == {"body.recipients", "body.x"}
    schema = (await api.client.get("/openapi.json")).json()
    body = schema["paths"]["/v1/recipients:batch"]["post"]["requestBody"]
    assert "recipients" in body["content"]["application/json"]["schema"]["properties"]


def _junk() -> dict[str, str]:
    return {"Authorization": f"Bearer hrk_{uuid.uuid4().hex[:12]}_{secrets.token_urlsafe(32)}"}


async def test_unknown_keys_from_one_address_are_bounded(stack: DevStack) -> None:
    """Only failed lookups count; past the limit a key this process verified still works, with no
    key cache at all (behind a proxy the attacker and the integrations share one address)."""
    async with running_admin_api(stack, key_lookups_per_client=3, key_cache_ttl_s=0.0) as api:
        good = await key(api, Scope.RECIPIENTS_READ)
        path = f"/v1/recipients/{rid()}"
        for _ in range(5):  # good lookups are not counted
            assert (await api.client.get(path, headers=good)).status_code == 404
        for _ in range(3):
            r = await api.client.get(path, headers=_junk())
            assert r.status_code == 401, r.text
        r = await api.client.get(path, headers=_junk())
        assert r.status_code == 429 and "Retry-After" in r.headers
        for _ in range(3):  # verified before: still looked up, still admitted
            assert (await api.client.get(path, headers=good)).status_code == 404
        fresh = await key(api, Scope.RECIPIENTS_READ)  # never verified here: waits like the rest
        assert (await api.client.get(path, headers=fresh)).status_code == 429


async def test_batch_bodies_are_read_only_for_a_key_and_counted_while_read(stack: DevStack) -> None:
    """Unauthenticated, a batch body over the small limit is a 401 (never buffered before the key
    check); authenticated and chunked (no Content-Length), past the batch limit it is a 413."""
    async with running_admin_api(stack, batch_max_bytes=200_000) as api:
        rows = b'{"recipients": [' + b'{"id": "a"},' * 15_000 + b'{"id": "a"}]}'  # ~180 kB

        async def chunked(body: bytes) -> AsyncIterator[bytes]:
            for i in range(0, len(body), 16_384):
                yield body[i : i + 16_384]

        r = await api.client.post("/v1/recipients:batch", content=chunked(rows))
        assert r.status_code == 401, r.text
        h = {"content-type": "application/json", **await key(api, Scope.RECIPIENTS_WRITE)}
        r = await api.client.post("/v1/recipients:batch", content=chunked(rows * 2), headers=h)
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM, r.text
        r = await api.client.post("/v1/recipients:batch", content=chunked(rows), headers=h)
        assert r.status_code == 422, r.text  # read whole: over 1,000 rows, not over the bytes


async def test_an_id_with_a_slash_stored_before_stays_readable_and_erasable(api: RunningApi) -> None:
    # Before ids were refused a "/", a batch or an import could store one; events may name one.
    ident = f"org/{rid()}"
    await RecipientStore(api.ctx.pool).put("", ident, RecipientIn(email="a@example.com"))
    h = await key(api, Scope.RECIPIENTS_READ, Scope.RECIPIENTS_WRITE)
    encoded = ident.replace("/", "%2F")
    for path in (f"/v1/recipients/{encoded}", f"/v1/recipients/{ident}"):
        r = await api.client.get(path, headers=h)
        assert r.status_code == 200 and r.json()["id"] == ident, (path, r.text)
    r = await api.client.patch(f"/v1/recipients/{encoded}", json={"locale": "pt-BR"}, headers=h)
    assert r.status_code == 200, r.text
    # New ones are refused: PUT, and a batch row
    r = await api.client.put(f"/v1/recipients/{ident}", json={}, headers=h)
    assert r.status_code == 422 and "'/'" in r.text, r.text
    r = await api.client.post("/v1/recipients:batch", json={"recipients": [{"id": "x/y"}]}, headers=h)
    assert r.json()["results"][0]["status"] == "invalid", r.text
    r = await api.client.delete(f"/v1/recipients/{encoded}", headers=h)
    assert r.status_code == 200 and r.json()["id"] == ident and r.json()["removed"]["recipient"] == 1, r.text
    assert (await api.client.get(f"/v1/recipients/{encoded}", headers=h)).status_code == 404


async def test_a_trailing_slash_is_redirected_not_taken_into_the_id(api: RunningApi) -> None:
    # The rest-of-path id must not end in "/": DELETE /v1/recipients/u-42/ answered 200 having
    # erased the absent recipient "u-42/", and GET/PATCH 404 where the app redirects.
    ident = rid()
    h = await key(api, Scope.RECIPIENTS_READ, Scope.RECIPIENTS_WRITE)
    assert (await api.client.put(f"/v1/recipients/{ident}", json={}, headers=h)).status_code == 201
    for method in ("GET", "PATCH", "DELETE"):
        r = await api.client.request(method, f"/v1/recipients/{ident}/", json={}, headers=h)
        assert r.status_code == 307 and r.headers["location"].endswith(f"/v1/recipients/{ident}"), (
            method,
            r.text,
        )
    assert (await api.client.get(f"/v1/recipients/{ident}", headers=h)).status_code == 200  # not erased
    r = await api.client.delete(f"/v1/recipients/{ident}/", headers=h, follow_redirects=True)
    assert r.status_code == 200 and r.json()["removed"]["recipient"] == 1, r.text
    assert (await api.client.get("/v1/recipients/", headers=h)).status_code == 404
