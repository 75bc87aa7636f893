"""What ``herald dev`` (``make run``) needs to start the API and show how to call it."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from datetime import UTC, datetime

from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.keys import Scope
from consumers.api.auth import TokenKeys, mint_token
from consumers.infra.db import connect_pool
from consumers.infra.settings import HeraldSettings

__all__ = ["DEMO_API_USER", "demo_access_lines", "demo_api_env"]

DEMO_API_USER = "alice"
_PREFERRED_PORT = 8080


def _port() -> int:
    for port in (_PREFERRED_PORT, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def demo_api_env() -> dict[str, str]:
    """A fresh signing key per run (demo tokens die with it), port 8080 when it is free, and the
    web components' demo page for the demo user."""
    return {
        "HERALD_API__JWT_SECRET": secrets.token_urlsafe(32),
        "HERALD_API__PORT": str(_port()),
        "HERALD_API__DEMO_USER": DEMO_API_USER,
        "HERALD_API__UNSUBSCRIBE_SECRET": secrets.token_urlsafe(32),
        "HERALD_ADMIN__KEY_PEPPER": secrets.token_urlsafe(32),  # the admin API (herald keys create)
        "HERALD_API__SWAGGER_UI": "true",  # /docs for the demo; off in production (a CDN page, no CSP)
    }


async def demo_access_lines(
    settings: HeraldSettings, user_id: str = DEMO_API_USER, *, wait_s: float = 60.0
) -> list[str]:
    """Waits (up to ``wait_s``) for the API to listen, so the printed curl line works when shown."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", settings.api.port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        break
    token = mint_token(TokenKeys.from_settings(settings.api), settings.api, user_id, now=datetime.now(UTC))
    base = f"http://127.0.0.1:{settings.api.port}"
    return [
        f"API on {base} (OpenAPI {base}/openapi.json, docs {base}/docs); token for {user_id}: {token}",
        f"curl -H 'Authorization: Bearer {token}' {base}/v1/inbox",
        f"curl -N -H 'Authorization: Bearer {token}' {base}/v1/inbox/stream",
        f"web components (inbox and preference centre of {user_id}): open {base}/demo",
        *await _admin_lines(settings, base),
    ]


async def _admin_lines(settings: HeraldSettings, base: str) -> list[str]:
    """An admin key for the demo (the pepper is this run's own) and one emit over HTTP."""
    if settings.admin.key_pepper is None:
        return []
    pool = await connect_pool(settings.database_url, max_size=1)
    try:
        pepper = settings.admin.key_pepper.get_secret_value().encode()
        key = await KeyStore(pool, pepper).create("herald-dev", (Scope.ADMIN,))
    finally:
        await pool.close()
    body = '{"type": "payment_receipt", "user_id": "alice", "data": {"amount": "9.90", "currency": "EUR"}}'
    return [
        f"admin API key (scope admin, this run only): {key.token}",
        f"curl -H 'Authorization: Bearer {key.token}' -H 'Content-Type: application/json' "
        f"-d '{body}' {base}/v1/events",
    ]
