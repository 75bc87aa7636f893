"""What the browser components use: single-use stream tickets, the ticketed stream, archive, CORS
for the allow-listed origins only, the versioned bundle, the demo routes and unsubscribe links."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio

from consumers.api.routes_static import BUNDLE, bundle_path
from consumers.api.tickets import StreamTickets
from consumers.api.unsubscribe_token import sign_unsubscribe
from consumers.devstack import DevStack
from consumers.devstack.api_demo import demo_api_env
from consumers.infra.settings import HeraldSettings
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings
from tests.waiting import until

ORIGIN = "https://app.example.com"
UNSUB_KEY = "u" * 40


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    settings = make_settings(
        stack,
        api=api_settings(
            cors_origins=[ORIGIN],
            stream_ticket_ttl_s=1,
            unsubscribe_secret=UNSUB_KEY,
            demo_user="demo-user",
            swagger_ui=True,  # as the demo's environment sets it (checked below)
        ),
    )
    async with running_api(settings) as running:
        yield running


def _user() -> str:
    return f"u-{time.monotonic_ns()}"


async def _first_event(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> dict[str, object]:
    async with client.stream("GET", url, params=params, timeout=10) as res:
        assert res.status_code == 200, await res.aread()
        data: dict[str, object] | None = None
        async for line in res.aiter_lines():
            if line.startswith("data:"):
                data = json.loads(line[5:])
            elif line == "" and data is not None:
                return data
    raise AssertionError("stream ended")


async def test_ticket_opens_one_stream_for_its_user_only(api: RunningApi) -> None:
    user, other = _user(), _user()
    res = await api.client.post("/v1/stream-tickets", headers=api.auth(user))
    assert res.status_code == 201
    ticket = res.json()["ticket"]
    assert res.json()["expires_in_s"] == 1
    reader = asyncio.create_task(_first_event(api.client, "/v1/stream", {"ticket": ticket}))

    async def subscribed() -> bool:  # a notification reaches only streams already open
        return api.ctx.hub.open_streams(user) > 0

    await until(subscribed, what="the ticket's stream subscribed", timeout=5)
    await api.add_rows(other, 1)  # someone else's row never shows
    [mine] = await api.add_rows(user, 1)
    event = await asyncio.wait_for(reader, 5)
    assert event["id"] == str(mine)
    # Single use: the same ticket is refused.
    again = await api.client.get("/v1/stream", params={"ticket": ticket})
    assert again.status_code == 401
    assert "already used" in again.json()["detail"]


async def test_ticket_expires_and_needs_a_token(api: RunningApi) -> None:
    assert (await api.client.post("/v1/stream-tickets")).status_code == 401
    ticket = (await api.client.post("/v1/stream-tickets", headers=api.auth(_user()))).json()["ticket"]
    await asyncio.sleep(1.3)
    assert (await api.client.get("/v1/stream", params={"ticket": ticket})).status_code == 401
    forged = await api.client.get("/v1/stream", params={"ticket": "x" * 43})
    assert forged.status_code == 401


async def test_a_ticketed_stream_ends_when_the_token_behind_it_expires(api: RunningApi) -> None:
    token = api.token(_user(), ttl=timedelta(seconds=2 - api.ctx.api.jwt_leeway_s))  # 2 s left
    res = await api.client.post("/v1/stream-tickets", headers={"Authorization": f"Bearer {token}"})
    t0 = time.monotonic()
    async with api.client.stream("GET", "/v1/stream", params={"ticket": res.json()["ticket"]}) as stream:
        assert stream.status_code == 200
        lines = await asyncio.wait_for(_all_lines(stream), 10)
    assert 0.5 < time.monotonic() - t0 < 6 and ": credential expired" in lines


async def test_a_redis_outage_is_a_503_that_names_no_host(stack: DevStack) -> None:
    down = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    async with running_api(make_settings(stack, api=api_settings(), redis_url=down)) as api:
        r = await api.client.post("/v1/stream-tickets", headers=api.auth(_user()))
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["detail"] == "stream tickets unavailable", r.text
        assert "127.0.0.1" not in r.text and ":9" not in r.text
        r = await api.client.get("/v1/stream", params={"ticket": "x" * 43})
        assert r.status_code == 503 and "127.0.0.1" not in r.text


async def _all_lines(response: httpx.Response) -> list[str]:
    return [line async for line in response.aiter_lines()]


async def test_ticketed_stream_resumes_from_last_event_id(api: RunningApi) -> None:
    user = _user()
    first, second, third = await api.add_rows(user, 3)
    page = (await api.client.get("/v1/inbox", headers=api.auth(user))).json()["items"]
    event_of_first = None
    ticket = (await api.client.post("/v1/stream-tickets", headers=api.auth(user))).json()["ticket"]
    # The event id of a row is its keyset cursor: take it from a live replay of everything after the first.
    rows = {r["id"]: r for r in page}
    assert str(first) in rows
    from datetime import datetime

    from channels.in_app.inbox_pg import encode_cursor

    event_of_first = encode_cursor(datetime.fromisoformat(rows[str(first)]["created_at"]), first)
    got = await _first_event(api.client, "/v1/stream", {"ticket": ticket, "last_event_id": event_of_first})
    assert got["id"] == str(second)  # the replay starts right after the resumed event
    bad = await api.client.get("/v1/stream", params={"ticket": ticket, "last_event_id": "nope"})
    assert bad.status_code == 422
    assert third


async def test_archive_removes_rows_and_the_unread_count(api: RunningApi) -> None:
    user = _user()
    a, b = await api.add_rows(user, 2)
    res = await api.client.post("/v1/inbox/archive", json={"ids": [str(a)]}, headers=api.auth(user))
    assert res.status_code == 200 and res.json() == {"archived": [str(a)]}
    # moved to the archive, not deleted
    assert await api.ctx.pool.fetchval("SELECT user_id FROM herald_inbox_archive WHERE id = $1", a) == user
    items = (await api.client.get("/v1/inbox", headers=api.auth(user))).json()["items"]
    assert [i["id"] for i in items] == [str(b)]
    count = (await api.client.get("/v1/inbox/unread-count", headers=api.auth(user))).json()
    assert count == {"unread": 1}
    # Another user's row looks missing, and nothing is removed.
    res = await api.client.post("/v1/inbox/archive", json={"ids": [str(b)]}, headers=api.auth(_user()))
    assert res.status_code == 404
    assert len((await api.client.get("/v1/inbox", headers=api.auth(user))).json()["items"]) == 1


async def test_cors_allows_listed_origins_only(api: RunningApi) -> None:
    pre = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = await api.client.options("/v1/inbox/read", headers={"Origin": ORIGIN, **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    evil = await api.client.options("/v1/inbox/read", headers={"Origin": "https://evil.example", **pre})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    user = _user()
    got = await api.client.get("/v1/inbox/unread-count", headers={"Origin": ORIGIN, **api.auth(user)})
    assert got.headers["access-control-allow-origin"] == ORIGIN
    other = await api.client.get(
        "/v1/inbox/unread-count", headers={"Origin": "https://evil.example", **api.auth(user)}
    )
    assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_without_an_allow_list(stack: DevStack) -> None:
    async with running_api(make_settings(stack, api=api_settings())) as plain:
        res = await plain.client.options(
            "/v1/inbox", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in res.headers
        assert (await plain.client.get("/demo")).status_code == 404  # demo only when configured


async def test_bundle_is_served_at_its_versioned_path(api: RunningApi) -> None:
    res = await api.client.get(bundle_path())
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/javascript")
    assert "immutable" in res.headers["cache-control"]
    assert res.content == BUNDLE.read_bytes()
    assert b"herald-inbox" in res.content
    assert (await api.client.get("/web/0.0.0-nope/herald.js")).status_code == 404


async def test_demo_page_and_its_token(api: RunningApi) -> None:
    page = await api.client.get("/demo")
    assert page.status_code == 200
    assert bundle_path() in page.text and "<herald-inbox" in page.text and "<herald-preferences" in page.text
    assert "eyJ" not in page.text  # no token in the HTML
    assert (await api.client.get("/docs")).status_code == 200  # served with swagger_ui on
    token = (await api.client.get("/demo/token")).json()["token"]
    me = await api.client.get("/v1/inbox/unread-count", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200


async def test_unsubscribe_page_then_one_click(api: RunningApi) -> None:
    user = _user()
    token = sign_unsubscribe(UNSUB_KEY.encode(), user, "marketing", int(time.time()) + 600)
    page = await api.client.get(f"/v1/unsubscribe/{token}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "marketing" in page.text and 'href="/demo#preferences"' in page.text
    prefs = await api.client.get("/v1/preferences", headers=api.auth(user))
    marketing = [
        p for p in prefs.json()["preferences"] if p["category"] == "marketing" and p["channel"] == "email"
    ]
    assert marketing[0]["enabled"] is True  # GET changed nothing
    wrong = await api.client.post(f"/v1/unsubscribe/{token}", content=b"yes please")
    assert wrong.status_code == 400
    res = await api.client.post(
        f"/v1/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert res.status_code == 200
    prefs = await api.client.get("/v1/preferences", headers=api.auth(user))
    marketing = [
        p for p in prefs.json()["preferences"] if p["category"] == "marketing" and p["channel"] == "email"
    ]
    assert marketing[0]["enabled"] is False


async def test_unsubscribe_refuses_bad_links_and_critical(api: RunningApi) -> None:
    user = _user()
    expired = sign_unsubscribe(UNSUB_KEY.encode(), user, "marketing", int(time.time()) - 1)
    page = await api.client.get(f"/v1/unsubscribe/{expired}")
    assert page.status_code == 400 and "expired" in page.text
    forged = sign_unsubscribe(b"not-the-key" * 4, user, "marketing", int(time.time()) + 600)
    res = await api.client.post(f"/v1/unsubscribe/{forged}", content=b"List-Unsubscribe=One-Click")
    assert res.status_code == 400
    security = sign_unsubscribe(UNSUB_KEY.encode(), user, "security", int(time.time()) + 600)
    page = await api.client.get(f"/v1/unsubscribe/{security}")
    assert "cannot be turned off" in page.text and "<form" not in page.text
    res = await api.client.post(f"/v1/unsubscribe/{security}", content=b"List-Unsubscribe=One-Click")
    assert res.status_code == 409


async def test_tickets_stay_readable_by_processes_of_the_previous_version(
    api: RunningApi, redis_client: redis_asyncio.Redis
) -> None:
    """A rolling upgrade: an old process unpacks the value as [tenant, user]; a new process redeems
    a ticket an old one minted (no expiry: its stream lasts as it did)."""
    prefix = api.ctx.api.stream_ticket_key_prefix
    tickets = StreamTickets(redis_client, ttl_s=60, prefix=prefix)

    def key(ticket: str) -> str:
        return f"{prefix}:{hashlib.sha256(ticket.encode()).hexdigest()}"

    ticket = await tickets.mint("ana", "acme", valid_until=1_900_000_000.5)
    value = await redis_client.getdel(key(ticket))
    assert value is not None
    tenant, user_id = json.loads(value)  # what an old process does
    assert (tenant, user_id) == ("acme", "ana")
    ticket = await tickets.mint("ana", "acme", valid_until=1_900_000_000.5)
    held = await tickets.redeem(ticket)
    assert held is not None and (held.user_id, held.tenant, held.valid_until) == (
        "ana",
        "acme",
        1_900_000_000.5,
    )
    assert await redis_client.exists(key(ticket), f"{key(ticket)}:until") == 0  # both gone, once
    old = "minted-by-an-old-process"
    await redis_client.set(key(old), json.dumps(["acme", "bo"]), ex=60)
    held = await tickets.redeem(old)
    assert held is not None and (held.user_id, held.tenant, held.valid_until) == ("bo", "acme", None)


def test_the_demo_environment_turns_swagger_ui_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`herald dev`'s API runs with demo_api_env(): that, not this file's fixture, turns /docs on."""
    for name in list(os.environ):
        if name.startswith("HERALD_API__"):
            monkeypatch.delenv(name)
    assert HeraldSettings().api.swagger_ui is False
    for name, value in demo_api_env().items():
        monkeypatch.setenv(name, value)
    assert demo_api_env()["HERALD_API__SWAGGER_UI"] == "true"
    assert HeraldSettings().api.swagger_ui is True
