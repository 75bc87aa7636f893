"""Client-supplied values are validated into range before SQL (422, never 500), and a push token
registered by another user moves to them on purpose: logged, counted, documented."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from consumers.devstack import DevStack
from consumers.runtime import metrics
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings

PROBLEM = "application/problem+json"
OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"]


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(stack, api=api_settings())) as running:
        yield running


def _cursor(when: str) -> str:
    """A well-formed keyset cursor (the API's own encoding) carrying ``when``."""
    return base64.urlsafe_b64encode(f"{when}|{uuid.uuid4()}".encode()).decode().rstrip("=")


@pytest.mark.parametrize("when", OUT_OF_RANGE)
async def test_a_cursor_with_an_out_of_range_date_is_422(api: RunningApi, when: str) -> None:
    h = api.auth(f"u-{uuid.uuid4().hex[:8]}")
    for cursor in (_cursor(when), f"u.{_cursor(when)}", f"r.{_cursor(when)}"):
        r = await api.client.get("/v1/inbox", params={"cursor": cursor}, headers=h)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("when", OUT_OF_RANGE)
async def test_a_last_event_id_with_an_out_of_range_date_is_422_not_a_cut_stream(
    api: RunningApi, when: str
) -> None:
    h = {**api.auth(f"u-{uuid.uuid4().hex[:8]}"), "Last-Event-ID": _cursor(when)}
    async with api.client.stream("GET", "/v1/inbox/stream", headers=h, timeout=10) as r:
        assert r.status_code == 422
        assert r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("when", OUT_OF_RANGE)
async def test_the_ticketed_stream_refuses_an_out_of_range_resume_point(api: RunningApi, when: str) -> None:
    params = {"ticket": "t" * 32, "last_event_id": _cursor(when)}
    async with api.client.stream("GET", "/v1/stream", params=params, timeout=10) as r:
        assert r.status_code == 422
        assert r.headers["content-type"] == PROBLEM


async def test_control_characters_in_a_preference_category_are_422(api: RunningApi) -> None:
    h = api.auth(f"u-{uuid.uuid4().hex[:8]}")
    body = {"preferences": [{"category": "acti\x00vity", "channel": "email", "enabled": False}]}
    r = await api.client.put("/v1/preferences", json=body, headers=h)
    if r.status_code == 405:  # the route is PATCH in some versions of the API
        r = await api.client.patch("/v1/preferences", json=body, headers=h)
    assert r.status_code == 422, r.text


async def test_a_token_registered_by_another_user_moves_logged_and_counted(
    api: RunningApi, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    token = f"tok-{uuid.uuid4().hex}"
    before = metrics.DEVICE_TOKENS_MOVED._value.get()

    async def register(user: str) -> httpx.Response:
        return await api.client.post(
            "/v1/devices", json={"token": token, "platform": "android"}, headers=api.auth(user)
        )

    assert (await register(alice)).status_code == 201
    assert (await register(alice)).status_code == 201  # a refresh by the owner is not a move
    assert metrics.DEVICE_TOKENS_MOVED._value.get() == before
    with caplog.at_level(logging.INFO, logger="consumers.api.routes_settings"):
        assert (await register(bob)).status_code == 201
    assert metrics.DEVICE_TOKENS_MOVED._value.get() == before + 1
    (line,) = [r.getMessage() for r in caplog.records if "moved" in r.getMessage()]
    assert alice in line and bob in line and token not in line  # the token is a secret
    listed = (await api.client.get("/v1/devices", headers=api.auth(alice))).json()["devices"]
    assert token not in [d["token"] for d in listed]
    listed = (await api.client.get("/v1/devices", headers=api.auth(bob))).json()["devices"]
    assert token in [d["token"] for d in listed]


@pytest.mark.parametrize("sub", ["u\x00x", "u\nx", " "])
async def test_a_token_whose_subject_is_not_an_identifier_is_refused(api: RunningApi, sub: str) -> None:
    # A signed token is trusted for who it names, not for what it contains: a subject with a NUL
    # or a newline would reach SQL and logs. 401, as for any unusable token.
    r = await api.client.get("/v1/inbox", headers=api.auth(sub))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM
