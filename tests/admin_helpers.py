"""The admin API's test set-up: a running API with admin keys enabled, keys by scope, fresh ids."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.keys import Scope
from consumers.api.admin.settings import AdminSettings
from consumers.devstack import DevStack
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings

PROBLEM = "application/problem+json"


@asynccontextmanager
async def running_admin_api(stack: DevStack, **admin: Any) -> AsyncIterator[RunningApi]:
    """The API with admin routes on: a fresh pepper, no key cache, its own event dedupe and
    key-lookup prefixes (``admin`` overrides any AdminSettings field)."""
    fields: dict[str, Any] = {
        "key_pepper": secrets.token_urlsafe(32),
        "key_cache_ttl_s": 0.0,
        "event_dedupe_prefix": f"t:ev:{uuid.uuid4().hex[:8]}",
        "key_lookups_prefix": f"t:kl:{uuid.uuid4().hex[:8]}",
        **admin,
    }
    settings = make_settings(stack, api=api_settings(), admin=AdminSettings(**fields))
    async with running_api(settings) as running:
        yield running


def keys(api: RunningApi) -> KeyStore:
    assert api.ctx.admin is not None and api.ctx.admin.keys is not None
    return api.ctx.admin.keys


async def key(api: RunningApi, *scopes: Scope, tenant: str | None = None) -> dict[str, str]:
    new = await keys(api).create(f"test-{uuid.uuid4().hex[:6]}", scopes, tenant)
    return {"Authorization": f"Bearer {new.token}"}


def rid() -> str:
    return f"r-{uuid.uuid4().hex[:12]}"
