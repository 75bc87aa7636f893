"""A real API server for tests: the app of ``herald run api`` on a free 127.0.0.1 port, in the
test's event loop, over the session's dev stack (fresh topic prefix, user ids and rate-limit keys)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from channels.in_app.inbox_pg import InboxService
from consumers.api.app import create_app
from consumers.api.auth import mint_token
from consumers.api.deps import ApiContext
from consumers.api.server import ApiServer, open_context
from consumers.infra.resources import Resources
from consumers.infra.settings import ApiSettings, HeraldSettings

__all__ = ["RunningApi", "api_settings", "running_api"]


def api_settings(**overrides: Any) -> ApiSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "jwt_secret": secrets.token_urlsafe(32),
        "rate_limit_key_prefix": f"t:api:rl:{uuid.uuid4().hex[:8]}",
        "sse_heartbeat_s": 0.5,
    }
    base.update(overrides)
    return ApiSettings(**base)


@dataclass
class RunningApi:
    url: str
    ctx: ApiContext
    settings: HeraldSettings
    client: httpx.AsyncClient

    def token(
        self, user_id: str, *, ttl: timedelta | None = None, tenant: str = "", **api_overrides: Any
    ) -> str:
        api = self.ctx.api.model_copy(update=api_overrides) if api_overrides else self.ctx.api
        return mint_token(self.ctx.keys, api, user_id, now=datetime.now(UTC), ttl=ttl, tenant=tenant)

    def auth(self, user_id: str, tenant: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, tenant=tenant)}"}

    async def add_rows(
        self, user_id: str, n: int, *, category: str = "activity", tenant: str = ""
    ) -> list[uuid.UUID]:
        """``n`` inbox rows for ``user_id`` in ``tenant`` (what the in-app channel writes), oldest first."""
        inbox = InboxService(self.ctx.pool)
        ids = []
        for i in range(n):
            key = uuid.uuid4().hex
            row_id, _ = await inbox.create(
                user_id=user_id,
                notification_id=f"n-{key}",
                type_="comment_reply",
                category=category,
                title=f"title {i}",
                body=f"body {i}",
                idempotency_key=f"msg_{key}",
                data={"i": i},
                tenant=tenant,
            )
            ids.append(row_id)
        return ids


@asynccontextmanager
async def running_api(settings: HeraldSettings) -> AsyncIterator[RunningApi]:
    res = Resources(settings)
    stopping = asyncio.Event()
    try:
        ctx = await open_context(res)
        server = ApiServer(create_app(ctx), settings.api.host, settings.api.port, graceful_s=1)
        hub_task = asyncio.create_task(ctx.hub.run(stopping))
        await asyncio.wait_for(ctx.hub.listening.wait(), 10)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield RunningApi(server.url, ctx, settings, client)
        finally:
            stopping.set()
            await hub_task
            await server.stop()
    finally:
        await res.close()
