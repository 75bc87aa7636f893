"""The console over HTTP without a browser: login and sessions, CSRF and Origin checks, the
authorization matrix (no session, a user's JWT, a used link: nothing), security headers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import pytest_asyncio

from channels.webhook.endpoints_pg import EndpointStore
from consumers.api.admin.keys import Scope
from consumers.api.auth import TokenKeys, mint_token
from consumers.console.auth import digest
from consumers.infra.settings import HeraldSettings
from tests.console_helpers import RunningConsole, console_settings, form_token, login, running_console

PAGES = [
    "/console/",
    "/console/dlq",
    "/console/endpoints",
    "/console/providers",
    "/console/live",
    "/console/live.json",
]


@pytest_asyncio.fixture(loop_scope="session")
async def console(settings: HeraldSettings) -> AsyncIterator[RunningConsole]:
    async with running_console(console_settings(settings)) as running:
        yield running


def _client(console: RunningConsole) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=console.url, timeout=10)


async def test_nothing_without_a_session_not_even_with_a_user_token(console: RunningConsole) -> None:
    jwt = mint_token(
        TokenKeys.from_settings(console.settings.api), console.settings.api, "alice", now=datetime.now(UTC)
    )
    async with _client(console) as c:
        for path in PAGES:
            for headers in ({}, {"Authorization": f"Bearer {jwt}"}):
                r = await c.get(path, headers=headers)
                assert (r.status_code, r.headers["location"]) == (303, "/console/login"), path
        r = await c.post("/console/dlq/replay", data={"topic": "x", "reason": "y"})
        assert r.status_code == 403
        # A user's token, a random key-looking string, garbage: not credentials for the console.
        for credential in (jwt, "hrk_0123456789ab_" + "A" * 43, "hcl_nope", ""):
            r = await login(c, credential)
            assert r.status_code == 401 and "set-cookie" not in {
                k.lower() for k in r.headers if "console" in r.headers[k]
            }
            assert (await c.get("/console/")).status_code == 303


async def test_only_a_live_admin_key_bound_to_no_tenant_opens_the_console(console: RunningConsole) -> None:
    admin_id, admin = await console.key(Scope.ADMIN)
    async with _client(console) as c:
        r = await login(c, admin)
        assert r.status_code == 303
        page = await c.get("/console/")
        assert page.status_code == 200 and f"key:{admin_id}" in page.text
    refused = [
        (await console.key(Scope.EMIT))[1],
        (await console.key(Scope.RECIPIENTS_WRITE, Scope.TOPICS_WRITE))[1],
        (await console.key(Scope.ADMIN, tenant="acme"))[1],  # the console sees every tenant
        admin[:-1] + ("A" if admin[-1] != "A" else "B"),  # right id, wrong secret
    ]
    for credential in refused:
        async with _client(console) as c:
            assert (await login(c, credential)).status_code == 401
            assert (await c.get("/console/")).status_code == 303
    await console.revoke(admin_id)
    async with _client(console) as c:
        assert (await login(c, admin)).status_code == 401


async def test_revoking_the_admin_key_ends_the_sessions_it_opened(console: RunningConsole) -> None:
    admin_id, admin = await console.key(Scope.ADMIN)
    other_id, other = await console.key(Scope.ADMIN)
    async with _client(console) as c, _client(console) as d:
        assert (await login(c, admin)).status_code == 303 and (await login(d, other)).status_code == 303
        assert (await c.get("/console/")).status_code == 200
        await console.revoke(admin_id)
        r = await c.get("/console/")
        assert (r.status_code, r.headers["location"]) == (303, "/console/login")
        assert (await d.get("/console/")).status_code == 200  # another key's session stays
    await console.revoke(other_id)


async def test_a_session_a_previous_version_opened_ends_with_its_key(
    console: RunningConsole, pg_pool: asyncpg.Pool
) -> None:
    # During a rolling upgrade a process from before migration 277 inserts sessions without
    # key_id: its key is the one the operator text names.
    admin_id, admin = await console.key(Scope.ADMIN)
    async with _client(console) as c:
        assert (await login(c, admin)).status_code == 303
        token = c.cookies.get("herald_console")
        assert token
        await pg_pool.execute(
            "UPDATE herald_console_sessions SET key_id = NULL WHERE token_hash = $1", digest(token)
        )
        assert (await c.get("/console/")).status_code == 200
        await console.revoke(admin_id)
        r = await c.get("/console/")
        assert (r.status_code, r.headers["location"]) == (303, "/console/login")


async def test_a_login_link_opens_one_session_once_with_a_strict_httponly_cookie(
    console: RunningConsole,
) -> None:
    link = await console.link("ops-ana")
    async with _client(console) as c:
        r = await login(c, link)
        assert r.status_code == 303 and r.headers["location"] == "/console/"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("herald_console="))
        attrs = {a.strip().lower() for a in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= attrs
        assert "secure" not in attrs  # plain http on 127.0.0.1 (elsewhere: Secure and __Host-)
        page = await c.get("/console/")
        assert page.status_code == 200 and "link:ops-ana" in page.text
        for header in ("content-security-policy", "x-frame-options", "cache-control"):
            assert header in page.headers
        assert "script-src 'self'" in page.headers["content-security-policy"]
    async with _client(console) as other:
        assert (await login(other, link)).status_code == 401  # used once already


async def test_login_form_needs_its_own_token_and_origin(console: RunningConsole) -> None:
    async with _client(console) as c:
        page = await c.get("/console/login")
        token = form_token(page.text, "login_csrf")
        link = await console.link()
        assert (await c.post("/console/login", data={"credential": link})).status_code == 403
        r = await c.post(
            "/console/login",
            data={"credential": link, "login_csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403
        assert (
            await c.post("/console/login", data={"credential": link, "login_csrf": token})
        ).status_code == 303


async def test_state_changes_need_the_session_csrf_token_and_same_origin(
    console: RunningConsole, pg_pool: asyncpg.Pool
) -> None:
    store = EndpointStore(pg_pool)
    ep = await store.add(
        f"owner-{uuid.uuid4().hex[:6]}", "https://hooks.example.com/x", now=datetime.now(UTC)
    )
    async with _client(console) as c:
        await login(c, await console.link())
        csrf = form_token((await c.get("/console/endpoints")).text)
        action = f"/console/endpoints/{ep.endpoint_id}/disable"
        assert (await c.post(action, data={})).status_code == 403
        assert (await c.post(action, data={"csrf": "x" * len(csrf)})).status_code == 403
        r = await c.post(action, data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        endpoint = await store.get(ep.endpoint_id)
        assert endpoint is not None and not endpoint.disabled
        r = await c.post(action, data={"csrf": csrf}, headers={"Origin": console.url})
        assert r.status_code == 303
        done = await c.get(r.headers["location"])  # the confirmation is one of the console's sentences
        assert f'<p class="flash" role="status">{ep.endpoint_id} disabled</p>' in done.text
        endpoint = await store.get(ep.endpoint_id)
        assert endpoint is not None and endpoint.disabled and "link:test" in (endpoint.disabled_reason or "")
        # Another session's token is not this session's.
        async with _client(console) as other:
            await login(other, await console.link())
            assert (
                await other.post(f"/console/endpoints/{ep.endpoint_id}/enable", data={"csrf": csrf})
            ).status_code == 403


async def test_refused_logins_count_like_refused_keys_and_a_known_key_still_logs_in(
    settings: HeraldSettings,
) -> None:
    """Failed logins (junk keys, junk links) count against the address; past the limit a link or a
    key this process never verified waits, an admin key it verified before does not."""
    async with running_console(console_settings(settings, key_lookups_per_client=2)) as console:
        _, admin = await console.key(Scope.ADMIN)
        async with _client(console) as c:
            assert (await login(c, admin)).status_code == 303
        async with _client(console) as c:
            assert (await login(c, "hcl_" + "A" * 43)).status_code == 401
            assert (await login(c, "hrk_0123456789ab_" + "A" * 43)).status_code == 401
            r = await login(c, await console.link())
            assert r.status_code == 429 and "Retry-After" in r.headers
            assert (await login(c, admin)).status_code == 303


async def test_a_crafted_link_cannot_put_its_words_in_the_console(console: RunningConsole) -> None:
    async with _client(console) as c:
        await login(c, await console.link())
        for query in (
            {"msg": "Session expired: call support on +1 555 0100"},
            {"done": "endpoint_disabled", "endpoint": "Session expired, call +1 555 0100"},
            {"done": "made_up", "endpoint": "ep_1"},
        ):
            page = await c.get("/console/endpoints", params=query)
            assert page.status_code == 200 and 'class="flash"' not in page.text, query
            assert "555" not in page.text
        page = await c.get(
            "/console/endpoints", params={"done": "endpoint_disabled", "endpoint": "support.evil-example.com"}
        )
        assert 'class="flash"' not in page.text and "evil-example" not in page.text
        page = await c.get("/console/n/Call-support-on-555-0100-your-account-is-locked")
        assert page.status_code == 404 and "555" not in page.text
    async with _client(console) as c:  # the login form takes only a login link's own format
        link = await console.link()
        assert f'value="{link}"' in (await c.get("/console/login", params={"link": link})).text
        page = await c.get("/console/login", params={"link": "hrk_planted_by_the_link_author"})
        assert "planted" not in page.text


async def test_logout_and_expiry_end_the_session(console: RunningConsole, pg_pool: asyncpg.Pool) -> None:
    async with _client(console) as c:
        await login(c, await console.link())
        csrf = form_token((await c.get("/console/")).text)
        stolen = c.cookies.get("herald_console")
        assert stolen
        assert (await c.post("/console/logout", data={"csrf": csrf})).status_code == 303
    async with _client(console) as replayer:
        replayer.cookies.set("herald_console", stolen)
        assert (await replayer.get("/console/")).status_code == 303
    async with _client(console) as c:
        await login(c, await console.link())
        token = c.cookies.get("herald_console")
        assert token and (await c.get("/console/")).status_code == 200
        await pg_pool.execute(
            "UPDATE herald_console_sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
            digest(token),
        )
        assert (await c.get("/console/")).status_code == 303


@pytest.mark.parametrize(
    "path", ["/console/dlq/list?topic=other.events.dlq", "/console/dlq/record?topic=x&partition=0&offset=0"]
)
async def test_dead_letter_pages_refuse_foreign_topics(console: RunningConsole, path: str) -> None:
    async with _client(console) as c:
        await login(c, await console.link())
        assert (await c.get(path)).status_code == 400


@pytest.mark.parametrize(
    "path",
    ["/console/?user_id=a%00b", "/console/?event_id=a%0Ab", "/console/n/abc%00def"],
)
async def test_control_characters_in_a_search_are_400_not_500(console: RunningConsole, path: str) -> None:
    async with _client(console) as c:
        await login(c, await console.link())
        assert (await c.get(path)).status_code == 400


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"])
async def test_a_time_out_of_the_stores_range_is_ignored_like_any_bad_time(
    console: RunningConsole, when: str
) -> None:
    async with _client(console) as c:
        await login(c, await console.link())
        r = await c.get("/console/", params={"user_id": "nobody", "since": when, "until": when})
        assert r.status_code == 200
