"""The apps' API against a real server (uvicorn on a free port) over the dev stack, with httpx:
the auth matrix, ownership (other users' ids → 404), pagination, limits, preferences, quiet
hours, devices and receipts on herald.receipts (preferences, quiet hours and devices in detail:
test_api_preferences.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
import pytest_asyncio

from consumers.devstack import DevStack
from schemas.codec import default_codec
from schemas.models import Receipt
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings
from tests.kafka_helpers import wait_for_records

PROBLEM = "application/problem+json"


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(stack, api=api_settings())) as running:
        yield running


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


ENDPOINTS = [
    ("GET", "/v1/inbox", None),
    ("GET", "/v1/inbox/unread-count", None),
    ("GET", f"/v1/inbox/{uuid.uuid4()}", None),
    ("POST", "/v1/inbox/read", {"ids": [str(uuid.uuid4())]}),
    ("POST", "/v1/inbox/read-all", None),
    ("GET", "/v1/inbox/stream", None),
    ("POST", "/v1/receipts", {"notification_id": "n1", "status": "opened"}),
    ("GET", "/v1/preferences", None),
    (
        "PUT",
        "/v1/preferences",
        {"preferences": [{"category": "activity", "channel": "push", "enabled": True}]},
    ),
    ("GET", "/v1/quiet-hours", None),
    ("PUT", "/v1/quiet-hours", {"timezone": "UTC"}),
    ("GET", "/v1/devices", None),
    ("POST", "/v1/devices", {"token": "t"}),
    ("DELETE", "/v1/devices/t", None),
]


def bad_tokens(api: RunningApi) -> dict[str, str]:
    sub = user()
    good = api.token(sub)
    header, payload, _sig = good.split(".")
    key: Any = api.ctx.keys.signing_key  # the test API signs with HS256, so a secret
    return {
        "garbage": "not-a-jwt",
        "bad signature": f"{header}.{payload}.{'A' * 43}",
        "other key": jwt.encode(
            {"sub": sub, "aud": "herald-api", "iat": 1, "exp": 4_000_000_000}, "k" * 40, algorithm="HS256"
        ),
        "expired": api.token(sub, ttl=timedelta(minutes=-5)),
        "wrong audience": api.token(sub, jwt_audience="someone-else"),
        "alg none": jwt.encode(
            {"sub": sub, "aud": "herald-api", "iat": 1, "exp": 4_000_000_000}, "", algorithm="none"
        ),
        "no sub": jwt.encode({"aud": "herald-api", "iat": 1, "exp": 4_000_000_000}, key, algorithm="HS256"),
        "no exp": jwt.encode({"sub": sub, "aud": "herald-api", "iat": 1}, key, algorithm="HS256"),
    }


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
async def test_every_endpoint_refuses_missing_and_bad_tokens(
    api: RunningApi, method: str, path: str, body: object
) -> None:
    r = await api.client.request(method, path, json=body)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"].startswith("Bearer")
    problem = r.json()
    assert (
        problem["status"] == 401 and problem["title"] == "Unauthorized" and problem["type"].startswith("http")
    )
    for name, token in bad_tokens(api).items():
        r = await api.client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"] == PROBLEM
    r = await api.client.request(method, path, json=body, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


async def test_expired_token_says_so(api: RunningApi) -> None:
    r = await api.client.get(
        "/v1/inbox", headers={"Authorization": f"Bearer {api.token(user(), ttl=timedelta(hours=-1))}"}
    )
    assert r.status_code == 401 and r.json()["detail"] == "token expired"


async def test_other_users_rows_are_404_and_untouched(api: RunningApi) -> None:
    alice, mallory = user(), user()
    (row,) = await api.add_rows(alice, 1)
    await api.ctx.devices.register(alice, f"tok-{alice}")
    as_mallory = api.auth(mallory)

    r = await api.client.get(f"/v1/inbox/{row}", headers=as_mallory)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    missing = await api.client.get(f"/v1/inbox/{uuid.uuid4()}", headers=as_mallory)
    assert missing.status_code == 404 and missing.json()["detail"] == r.json()["detail"]  # no existence leak

    r = await api.client.post("/v1/inbox/read", json={"ids": [str(row)]}, headers=as_mallory)
    assert r.status_code == 404
    r = await api.client.post("/v1/inbox/read-all", headers=as_mallory)
    assert r.status_code == 200 and r.json() == {"read": []}
    r = await api.client.delete(f"/v1/devices/tok-{alice}", headers=as_mallory)
    assert r.status_code == 404
    r = await api.client.get("/v1/inbox", headers=as_mallory)
    assert r.json()["items"] == []
    r = await api.client.get("/v1/devices", headers=as_mallory)
    assert r.json() == {"devices": []}

    # Alice's row and device are as they were.
    r = await api.client.get(f"/v1/inbox/{row}", headers=api.auth(alice))
    assert r.status_code == 200 and r.json()["read_at"] is None
    assert [t.token for t in await api.ctx.devices.tokens(alice)] == [f"tok-{alice}"]
    # A mix of own and foreign ids changes nothing.
    (own,) = await api.add_rows(mallory, 1)
    r = await api.client.post("/v1/inbox/read", json={"ids": [str(own), str(row)]}, headers=as_mallory)
    assert r.status_code == 404
    assert (await api.client.get("/v1/inbox/unread-count", headers=as_mallory)).json() == {"unread": 1}


async def test_inbox_lists_unread_first_and_pages_stably_while_rows_arrive(api: RunningApi) -> None:
    u = user()
    h = api.auth(u)
    first = await api.add_rows(u, 12)  # oldest first
    r = await api.client.post("/v1/inbox/read", json={"ids": [str(i) for i in first[:4]]}, headers=h)
    assert r.status_code == 200 and sorted(r.json()["read"]) == sorted(str(i) for i in first[:4])
    unread_before = list(reversed(first[4:]))  # newest first
    read_before = list(reversed(first[:4]))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        r = await api.client.get("/v1/inbox", params=params, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [i["id"] for i in body["items"]]
        pages += 1
        await api.add_rows(u, 2)  # new rows arrive between pages: they must not shift later pages
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in unread_before + read_before]
    assert pages == 3 and len(set(seen)) == len(seen)

    # A fresh first page shows the newcomers first (unread, newest first).
    r = await api.client.get("/v1/inbox", params={"limit": 3}, headers=h)
    items = r.json()["items"]
    assert all(i["read_at"] is None for i in items) and items[0]["title"] == "title 1"
    assert (await api.client.get("/v1/inbox/unread-count", headers=h)).json() == {"unread": 8 + 6}

    r = await api.client.get("/v1/inbox", params={"unread_only": "true", "limit": 100}, headers=h)
    assert len(r.json()["items"]) == 14 and r.json()["next_cursor"] is None


async def test_mark_read_and_read_all_publish_read_receipts(api: RunningApi) -> None:
    u = user()
    h = api.auth(u)
    rows = await api.add_rows(u, 3)
    r = await api.client.post("/v1/inbox/read", json={"ids": [str(rows[0])]}, headers=h)
    assert r.status_code == 200
    r = await api.client.post("/v1/inbox/read-all", headers=h)
    assert sorted(r.json()["read"]) == sorted(str(i) for i in rows[1:])
    assert (await api.client.get("/v1/inbox/unread-count", headers=h)).json() == {"unread": 0}

    records = await wait_for_records(api.settings, api.ctx.topics.receipts, 3, timeout=15)
    receipts = [default_codec().decode(rec.value, Receipt) for rec in records]
    assert all(isinstance(x, Receipt) for x in receipts)
    assert {(x.user_id, x.status.value, x.source) for x in receipts} == {(u, "read", "inbox")}
    names = {
        row["notification_id"]
        for row in await api.ctx.pool.fetch(
            "SELECT notification_id FROM herald_inbox WHERE id = ANY($1::uuid[])", rows
        )
    }
    assert {x.notification_id for x in receipts} == names
    assert {rec.key.decode() for rec in records} == names


async def test_push_receipts_are_published_for_the_token_user(api: RunningApi) -> None:
    u = user()
    r = await api.client.post(
        "/v1/receipts", json={"notification_id": "notif-1", "status": "opened"}, headers=api.auth(u, "acme")
    )
    assert r.status_code == 202, r.text
    r = await api.client.post(
        "/v1/receipts",
        json={"notification_id": "notif-2", "status": "delivered", "at": "2020-01-01T00:00:00Z"},
        headers=api.auth(u),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body.at"
    r = await api.client.post(
        "/v1/receipts", json={"notification_id": "notif-2", "status": "read"}, headers=api.auth(u)
    )
    assert r.status_code == 422  # read receipts come from the inbox, not from apps
    (rec,) = await wait_for_records(api.settings, api.ctx.topics.receipts, 1, timeout=15)
    receipt = default_codec().decode(rec.value, Receipt)
    assert (
        receipt.notification_id,
        receipt.user_id,
        receipt.status.value,
        receipt.channel,
        receipt.source,
        receipt.tenant,  # the token's: the fallback compares (tenant, user) with the notification's
    ) == ("notif-1", u, "opened", "push", "api", "acme")


async def test_validation_and_limits_are_problem_details(api: RunningApi) -> None:
    h = api.auth(user())
    cases: list[tuple[str, str, dict[str, object] | None, str]] = [
        ("GET", "/v1/inbox?limit=1000", None, "query.limit"),
        ("GET", "/v1/inbox?limit=0", None, "query.limit"),
        ("GET", "/v1/inbox?cursor=nonsense", None, "query.cursor"),
        ("GET", "/v1/inbox/not-a-uuid", None, "path.item_id"),
        ("POST", "/v1/inbox/read", {"ids": []}, "body.ids"),
        ("POST", "/v1/inbox/read", {"ids": ["x"]}, "body.ids[0]"),
        ("POST", "/v1/inbox/read", {"ids": [str(uuid.uuid4())], "extra": 1}, "body.extra"),
        ("POST", "/v1/devices", {"token": "has space"}, "body.token"),
        ("POST", "/v1/devices", {"token": "t", "platform": "palm"}, "body.platform"),
    ]
    for method, path, body, loc in cases:
        r = await api.client.request(method, path, json=body, headers=h)
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == PROBLEM
        problem = r.json()
        assert problem["status"] == 422 and loc in [e["loc"] for e in problem["errors"]], (loc, problem)
    r = await api.client.post(
        "/v1/inbox/read", content=b"{not json", headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    big = {"ids": [str(uuid.uuid4())] * 3000}  # ~120 KB > 64 KiB
    r = await api.client.post("/v1/inbox/read", json=big, headers=h)
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    r = await api.client.post(
        "/v1/inbox/read", content=chunked(), headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_openapi_is_published(api: RunningApi) -> None:
    assert (await api.client.get("/docs")).status_code == 404  # Swagger UI (CDN scripts) is opt-in
    schema = (await api.client.get("/openapi.json")).json()
    assert {
        "/v1/inbox",
        "/v1/inbox/unread-count",
        "/v1/inbox/read",
        "/v1/inbox/read-all",
        "/v1/inbox/stream",
        "/v1/receipts",
        "/v1/preferences",
        "/v1/quiet-hours",
        "/v1/devices",
        "/v1/devices/{token}",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "application/problem+json" in schema["paths"]["/v1/inbox"]["get"]["responses"]["401"]["content"]


async def test_rate_limit_per_token(stack: DevStack) -> None:
    settings = make_settings(stack, api=api_settings(rate_limit_requests=3, rate_limit_window_s=30))
    async with running_api(settings) as api:
        u = user()
        h1, h2 = api.auth(u), api.auth(u)  # two tokens of one user: separate budgets
        codes = [(await api.client.get("/v1/inbox/unread-count", headers=h1)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = await api.client.get("/v1/inbox/unread-count", headers=h1)
        assert r.headers["content-type"] == PROBLEM and 1 <= int(r.headers["retry-after"]) <= 30
        assert (await api.client.get("/v1/inbox/unread-count", headers=h2)).status_code == 200
        # Counted atomically: a burst of 20 concurrent requests lets exactly 3 through.
        h3 = api.auth(u)
        burst = await asyncio.gather(
            *(api.client.get("/v1/inbox/unread-count", headers=h3) for _ in range(20))
        )
        assert sorted(r.status_code for r in burst).count(200) == 3
