"""``GET /v1/inbox/stream``: new inbox rows reach the connected user within a second (LISTEN/NOTIFY),
only theirs, and a reconnect with ``Last-Event-ID`` replays what was missed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio

from consumers.api.deps import inbox_stream
from consumers.devstack import DevStack
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings
from tests.waiting import until


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(stack, api=api_settings())) as running:
        yield running


class Events:
    """Parsed SSE events of one open stream, read in the background."""

    def __init__(self, response: httpx.Response) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.comments = 0
        self.comment_lines: list[str] = []
        self.ended = False  # the server closed the stream
        self._task = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                self.comments += 1
                self.comment_lines.append(line)
            elif line == "":
                if "data" in event:
                    await self.queue.put(event)
                event = {}
            else:
                field, _, value = line.partition(":")
                event[field] = json.loads(value.strip()) if field == "data" else value.strip()
        self.ended = True

    def saw_comments(self, n: int) -> Callable[[], Awaitable[bool]]:
        """A condition for :func:`until`: at least ``n`` SSE comments (connected, keepalives) read."""

        async def check() -> bool:
            return self.comments >= n

        return check

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def close(self) -> None:
        self._task.cancel()


async def open_stream(
    api: RunningApi,
    user_id: str,
    last_event_id: str | None = None,
) -> tuple[httpx.Response, Events, Any]:
    headers = api.auth(user_id)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    cm = api.client.stream("GET", "/v1/inbox/stream", headers=headers)
    response = await cm.__aenter__()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response, Events(response), cm


async def test_new_notification_arrives_within_one_second_and_only_for_its_user(api: RunningApi) -> None:
    me, other = f"s-{uuid.uuid4().hex[:10]}", f"s-{uuid.uuid4().hex[:10]}"
    _, events, cm = await open_stream(api, me)
    try:
        # The stream is subscribed before its first bytes (": connected") go out.
        await until(events.saw_comments(1), what="the stream's ': connected' comment", timeout=5)
        await api.add_rows(other, 1)
        t0 = time.monotonic()
        (mine,) = await api.add_rows(me, 1)
        event = await events.next(timeout=1.0)
        latency = time.monotonic() - t0
        assert event["event"] == "notification"
        assert event["data"]["id"] == str(mine) and event["data"]["title"] == "title 0"
        assert latency < 1.0
        assert events.queue.empty()
        # A heartbeat every 0.5 s in tests keeps proxies (and us) informed. Two of them after my row:
        # the other user's row, written before mine, would have come by then; it never does.
        seen = events.comments
        await until(events.saw_comments(seen + 2), what="two keepalives", timeout=5)
        assert events.queue.empty()
    finally:
        await events.close()
        await cm.__aexit__(None, None, None)


async def test_reconnect_with_last_event_id_replays_what_was_missed(api: RunningApi) -> None:
    me = f"s-{uuid.uuid4().hex[:10]}"
    _, events, cm = await open_stream(api, me)
    (first,) = await api.add_rows(me, 1)
    got = await events.next()
    assert got["data"]["id"] == str(first)
    await events.close()
    await cm.__aexit__(None, None, None)

    missed = await api.add_rows(me, 3)  # while disconnected
    _, events, cm = await open_stream(api, me, last_event_id=got["id"])
    try:
        replayed = [await events.next() for _ in range(3)]
        assert [e["data"]["id"] for e in replayed] == [str(i) for i in missed]  # oldest first
        (live,) = await api.add_rows(me, 1)
        assert (await events.next())["data"]["id"] == str(live)
        assert events.queue.empty()
    finally:
        await events.close()
        await cm.__aexit__(None, None, None)

    r = await api.client.get("/v1/inbox/stream", headers={**api.auth(me), "Last-Event-ID": "garbage"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_rows_inserted_while_listen_connection_is_down_still_arrive(api: RunningApi) -> None:
    me = f"s-{uuid.uuid4().hex[:10]}"
    _, events, cm = await open_stream(api, me)
    try:
        (first,) = await api.add_rows(me, 1)
        assert (await events.next())["data"]["id"] == str(first)
        conn = api.ctx.hub._listener.connection
        assert conn is not None
        await api.ctx.pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        (during,) = await api.add_rows(me, 1)  # nobody listens now
        assert (await events.next(timeout=5))["data"]["id"] == str(during)  # replayed after reconnect
    finally:
        await events.close()
        await cm.__aexit__(None, None, None)


async def _lines_until_closed(response: httpx.Response, timeout: float) -> list[str]:
    async def read() -> list[str]:
        return [line async for line in response.aiter_lines()]

    return await asyncio.wait_for(read(), timeout)


async def test_the_stream_ends_when_its_token_expires(api: RunningApi) -> None:
    """A stream must not outlive its credential: an expired or revoked token stops receiving rows."""
    user = f"s-{uuid.uuid4().hex[:10]}"
    leeway = api.ctx.api.jwt_leeway_s
    token = api.token(user, ttl=timedelta(seconds=2 - leeway))  # accepted for about 2 s more
    t0 = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    async with api.client.stream("GET", "/v1/inbox/stream", headers=headers, timeout=15) as response:
        assert response.status_code == 200
        lines = await _lines_until_closed(response, timeout=10)
    assert 0.5 < time.monotonic() - t0 < 6
    assert ": credential expired" in lines


async def test_a_new_stream_past_the_cap_closes_the_users_oldest(stack: DevStack) -> None:
    """The oldest stream is the likeliest dead (no FIN from a phone that lost its network); the
    newest is the live client reconnecting, so it gets the slot."""
    settings = make_settings(stack, api=api_settings(sse_streams_per_user=2))
    async with running_api(settings) as capped:
        user = f"s-{uuid.uuid4().hex[:10]}"
        opened = []
        try:
            for _ in range(2):
                opened.append(await open_stream(capped, user))
                await until(opened[-1][1].saw_comments(1), what="connected", timeout=5)
            other = await open_stream(capped, f"s-{uuid.uuid4().hex[:10]}")  # another user: no effect
            opened.append(other)
            await until(other[1].saw_comments(1), what="connected", timeout=5)
            newest = await open_stream(capped, user)
            opened.append(newest)
            await until(newest[1].saw_comments(1), what="connected", timeout=5)
            first, second = opened[0][1], opened[1][1]

            async def first_closed() -> bool:
                return first.ended

            await until(first_closed, what="the oldest stream closed", timeout=5)
            assert ": replaced by a newer stream" in first.comment_lines
            assert not second.ended and not other[1].ended
            assert capped.ctx.hub.open_streams(user) == 2
            (row,) = await capped.add_rows(user, 1)
            for live in (newest[1], second):
                assert (await live.next())["data"]["id"] == str(row)
        finally:
            for _, events, cm in opened:
                await events.close()
                await cm.__aexit__(None, None, None)


async def test_a_stream_whose_body_never_runs_holds_no_slot(api: RunningApi) -> None:
    """The response is made but dropped before its body is iterated (the client left first): the
    user's slot count must not grow."""
    user = f"s-{uuid.uuid4().hex[:10]}"
    response = inbox_stream(api.ctx, user, None)
    assert response.media_type == "text/event-stream"
    del response
    assert api.ctx.hub.open_streams(user) == 0
