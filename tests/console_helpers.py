"""The API process with its console, as ``herald run api`` builds it, on a free port in the test's
event loop; and an httpx client that logs in the way a browser does."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.keys import Scope
from consumers.api.admin.settings import AdminSettings
from consumers.api.process import build
from consumers.console.auth import LoginLinks
from consumers.devstack.processes import free_port
from consumers.infra.clock import SystemClock
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.runtime.process import ProcessOptions
from tests.api_helpers import api_settings

__all__ = ["RunningConsole", "console_settings", "login", "running_console"]


def console_settings(settings: HeraldSettings, **admin_fields: Any) -> HeraldSettings:
    """An API on a free port, with the admin API's key store (so admin keys can log in) and its own
    failed-lookup counters (``admin_fields`` overrides any AdminSettings field)."""
    fields: dict[str, Any] = {
        "key_pepper": secrets.token_urlsafe(32),
        "key_cache_ttl_s": 0.0,
        "key_lookups_prefix": f"t:kl:{uuid.uuid4().hex[:8]}",
        **admin_fields,
    }
    admin = AdminSettings(**fields)
    return settings.model_copy(
        update={"api": api_settings(port=free_port(), rate_limit_requests=0), "admin": admin}
    )


@dataclass
class RunningConsole:
    url: str
    settings: HeraldSettings
    res: Resources

    async def key(self, *scopes: Scope, tenant: str | None = None) -> tuple[str, str]:
        """A new service key: (its id, the credential), as `herald keys create` makes it."""
        pepper = self.settings.admin.key_pepper
        assert pepper is not None
        store = KeyStore(await self.res.pool(), pepper.get_secret_value().encode(), cache_ttl_s=0.0)
        new = await store.create(f"ops-{'-'.join(s.value for s in scopes)}", scopes, tenant)
        return new.key_id, new.token

    async def revoke(self, key_id: str) -> None:
        pepper = self.settings.admin.key_pepper
        assert pepper is not None
        await KeyStore(await self.res.pool(), pepper.get_secret_value().encode()).revoke(key_id)

    async def link(self, label: str = "test") -> str:
        pool = await self.res.pool()
        return await LoginLinks(pool).create(label, SystemClock().now(), 600)


@asynccontextmanager
async def running_console(settings: HeraldSettings) -> AsyncIterator[RunningConsole]:
    res = Resources(settings)
    stopping = asyncio.Event()
    try:
        spec = await build(res, ProcessOptions())
        tasks = [asyncio.create_task(loop(stopping)) for loop in spec.loops]
        url = f"http://127.0.0.1:{settings.api.port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            for _ in range(200):
                try:
                    await probe.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        try:
            yield RunningConsole(url, settings, res)
        finally:
            stopping.set()
            await asyncio.gather(*tasks)
    finally:
        await res.close()


_FIELD = re.compile(r'name="(csrf|login_csrf)" value="([^"]+)"')


def form_token(html: str, name: str = "csrf") -> str:
    for field, value in _FIELD.findall(html):
        if field == name:
            return str(value)
    raise AssertionError(f"no {name} field in the page")


async def login(client: httpx.AsyncClient, credential: str) -> httpx.Response:
    """GET the login form (its double-submit cookie), POST the credential, as a browser would."""
    page = await client.get("/console/login")
    return await client.post(
        "/console/login",
        data={"credential": credential, "login_csrf": form_token(page.text, "login_csrf")},
    )
