"""The apps' API against a real server over the dev stack: what a user sets for themself —
preferences (critical locked), the digest switch, quiet hours, devices."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from channels.push.devices_pg import PgDeviceTokens
from consumers.devstack import DevStack
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings

PROBLEM = "application/problem+json"


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(stack, api=api_settings())) as running:
        yield running


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def test_preferences_show_critical_locked_and_refuse_turning_it_off(api: RunningApi) -> None:
    u = user()
    h = api.auth(u)
    prefs = {
        (p["category"], p["channel"]): p
        for p in (await api.client.get("/v1/preferences", headers=h)).json()["preferences"]
    }
    assert prefs[("security", "sms")] == {
        "category": "security",
        "channel": "sms",
        "enabled": True,
        "default": True,
        "locked": True,
    }
    assert prefs[("activity", "push")]["enabled"] is False  # opt-in channel
    assert prefs[("marketing", "email")]["enabled"] is True and not prefs[("marketing", "email")]["locked"]
    assert not any(c == "system" for c, _ in prefs)

    r = await api.client.put(
        "/v1/preferences",
        headers=h,
        json={
            "preferences": [
                {"category": "activity", "channel": "push", "enabled": True},
                {"category": "security", "channel": "email", "enabled": False},
                {"category": "nope", "channel": "email", "enabled": False},
                {"category": "tips", "channel": "sms", "enabled": True},
            ]
        },
    )
    assert r.status_code == 422
    errors = {e["loc"]: e["type"] for e in r.json()["errors"]}
    assert errors == {
        "body.preferences[1]": "locked",
        "body.preferences[2]": "unknown_category",
        "body.preferences[3]": "unknown_channel",
    }
    assert await api.ctx.pool.fetchval("SELECT count(*) FROM herald_preferences WHERE user_id = $1", u) == 0

    r = await api.client.put(
        "/v1/preferences",
        headers=h,
        json={
            "preferences": [
                {"category": "activity", "channel": "push", "enabled": True},
                {"category": "marketing", "channel": "email", "enabled": False},
                {"category": "security", "channel": "push", "enabled": True},  # a no-op: it is always on
            ]
        },
    )
    assert r.status_code == 200, r.text
    after = {(p["category"], p["channel"]): p["enabled"] for p in r.json()["preferences"]}
    assert after[("activity", "push")] is True and after[("marketing", "email")] is False
    rows = await api.ctx.pool.fetch(
        "SELECT category, channel, enabled FROM herald_preferences WHERE user_id = $1 ORDER BY category", u
    )
    assert [tuple(r) for r in rows] == [("activity", "push", True), ("marketing", "email", False)]


async def test_the_digest_switch_defaults_on_and_persists(api: RunningApi) -> None:
    u = user()
    h = api.auth(u)
    assert (await api.client.get("/v1/preferences", headers=h)).json()["digest"] is True
    r = await api.client.put("/v1/preferences", headers=h, json={})
    assert r.status_code == 422  # nothing to change
    r = await api.client.put("/v1/preferences", headers=h, json={"digest": False})
    assert r.status_code == 200, r.text
    assert r.json()["digest"] is False
    assert await api.ctx.pool.fetchval("SELECT digest FROM herald_recipients WHERE user_id = $1", u) is False
    assert (await api.client.get("/v1/preferences", headers=h)).json()["digest"] is False
    # Category changes alone leave it as it is.
    change = {"preferences": [{"category": "marketing", "channel": "email", "enabled": False}]}
    assert (await api.client.put("/v1/preferences", headers=h, json=change)).json()["digest"] is False
    r = await api.client.put("/v1/preferences", headers=h, json={"digest": True})
    assert r.json()["digest"] is True


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"timezone": "+01:00"}, "body.timezone"),
        ({"timezone": "../../etc/passwd"}, "body.timezone"),
        ({"timezone": "UTC", "start": "22:00"}, "body.end"),
        ({"timezone": "UTC", "start": "25:00", "end": "07:00"}, "body.start"),
        ({"timezone": "UTC", "start": "22:00", "end": "22:00"}, "body.end"),
        ({"timezone": "UTC", "start": "22:00+01:00", "end": "07:00"}, "body.start"),
    ],
)
async def test_quiet_hours_refuse_invalid_zones_and_windows(
    api: RunningApi, body: dict[str, str], loc: str
) -> None:
    r = await api.client.put("/v1/quiet-hours", json=body, headers=api.auth(user()))
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["errors"]]


async def test_quiet_hours_round_trip(api: RunningApi) -> None:
    u = user()
    h = api.auth(u)
    assert (await api.client.get("/v1/quiet-hours", headers=h)).json() == {
        "timezone": "UTC",
        "start": None,
        "end": None,
    }
    body = {"timezone": "America/Sao_Paulo", "start": "22:30", "end": "07:00"}
    r = await api.client.put("/v1/quiet-hours", json=body, headers=h)
    assert r.status_code == 200 and r.json() == body
    assert (await api.client.get("/v1/quiet-hours", headers=h)).json() == body
    row = await api.ctx.pool.fetchrow(
        "SELECT timezone, quiet_start::text, quiet_end::text FROM herald_recipients WHERE user_id = $1", u
    )
    assert tuple(row) == ("America/Sao_Paulo", "22:30:00", "07:00:00")
    r = await api.client.put("/v1/quiet-hours", json={"timezone": "Asia/Kathmandu"}, headers=h)
    assert r.json() == {"timezone": "Asia/Kathmandu", "start": None, "end": None}


async def test_devices_register_list_delete(api: RunningApi) -> None:
    u = user()
    h = api.auth(u)
    token = f"fcm:{uuid.uuid4().hex}"
    r = await api.client.post("/v1/devices", json={"token": token, "platform": "ios"}, headers=h)
    assert r.status_code == 201 and r.json() == {"token": token, "platform": "ios"}
    assert (await api.client.get("/v1/devices", headers=h)).json() == {
        "devices": [{"token": token, "platform": "ios"}]
    }
    r = await api.client.delete(f"/v1/devices/{token}", headers=h)
    assert r.status_code == 204
    assert await api.ctx.devices.tokens(u) == []
    r = await api.client.delete(f"/v1/devices/{token}", headers=h)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


async def test_a_user_keeps_the_most_recently_registered_devices(stack: DevStack) -> None:
    async with running_api(make_settings(stack, api=api_settings(devices_per_user=3))) as capped:
        u = user()
        h = capped.auth(u)
        t1, t2, t3, t4 = (f"fcm:{uuid.uuid4().hex}" for _ in range(4))
        for token in (t1, t2, t3, t1, t4):  # t1 refreshed: t2 is now the least recently registered
            r = await capped.client.post("/v1/devices", json={"token": token}, headers=h)
            assert r.status_code == 201
        listed = (await capped.client.get("/v1/devices", headers=h)).json()["devices"]
        assert [d["token"] for d in listed] == [t4, t1, t3]
        other = capped.auth(user())  # another user's devices are not counted against this one
        assert (await capped.client.post("/v1/devices", json={"token": t2}, headers=other)).status_code == 201
        assert len((await capped.client.get("/v1/devices", headers=h)).json()["devices"]) == 3


async def test_concurrent_registrations_stay_at_the_cap(pg_pool: asyncpg.Pool) -> None:
    """Under READ COMMITTED each registration alone would see only its own new row; they take turns."""
    devices, u = PgDeviceTokens(pg_pool), user()
    for _ in range(3):  # a few rounds: without the lock a single round may happen to serialize
        tokens = [f"fcm:{uuid.uuid4().hex}" for _ in range(10)]
        await asyncio.gather(*(devices.register(u, t, keep=3) for t in tokens))
        assert len(await devices.tokens(u)) == 3
