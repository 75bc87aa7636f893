"""What the admin routes need beyond the apps' API context: the key store, Redis, the routing table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import redis.asyncio as redis_asyncio

from channels.storage_errors import PG_ERRORS
from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.lookup_guard import LookupGuard
from consumers.api.admin.settings import AdminSettings
from consumers.classifier.routing import RoutingTable

__all__ = ["AdminContext"]

log = logging.getLogger(__name__)


@dataclass
class AdminContext:
    keys: KeyStore | None  # None: no key pepper configured, the admin API answers 503
    redis: redis_asyncio.Redis
    routing: RoutingTable
    settings: AdminSettings
    # failed key lookups per client address, shared with the console's login (default: unbounded)
    guard: LookupGuard = field(default_factory=lambda: LookupGuard(None))

    async def run_flusher(self, stopping: asyncio.Event) -> None:
        """Write keys' last use every ``key_last_used_flush_s`` and once more at shutdown."""
        if self.keys is None:
            return
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.key_last_used_flush_s)
            try:
                await self.keys.flush_last_used()
            except PG_ERRORS as exc:
                # a lost timestamp must not stop the API; the next flush writes the newer one
                log.warning("could not record API keys' last use: %s", exc)
