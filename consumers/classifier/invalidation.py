"""Profile changes reach the classifier's cache within one NOTIFY: LISTEN on ``herald_profiles``.

Migration 070's triggers (payload: ``{"tenant": ..., "user_id": ...}`` since migration 230) notify at commit of any write to ``herald_recipients`` or
``herald_preferences`` (the admin API, the apps' preference routes, SQL by hand). The cache drops
that (tenant, user), so the next event reads the new profile. While the LISTEN connection is down
notifications can be missed: on every (re)connect the whole cache is dropped, and the TTL
(``classifier.lookup_cache_ttl_s``) bounds staleness in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import asyncpg

from channels.storage_errors import PG_ERRORS
from consumers.classifier.lookup import ProfileCache, ProfileKey

__all__ = ["CHANNEL", "ProfileInvalidator", "profile_key"]

log = logging.getLogger(__name__)

CHANNEL = "herald_profiles"


def profile_key(payload: str) -> ProfileKey | None:
    """The (tenant, user id) a notification names; None when it names none (drop everything). Pure."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    tenant, user_id = data.get("tenant"), data.get("user_id")
    if not isinstance(tenant, str) or not isinstance(user_id, str):
        return None
    return tenant, user_id


class ProfileInvalidator:
    def __init__(self, dsn: str, cache: ProfileCache, *, reconnect_s: float = 1.0) -> None:
        self._dsn = dsn
        self._cache = cache
        self._reconnect_s = reconnect_s
        self.listening = asyncio.Event()
        self.received = 0

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.received += 1
        self._cache.invalidate(profile_key(payload))  # unreadable: drop all rather than keep a stale one

    async def run(self, stopping: asyncio.Event) -> None:
        """A BackgroundLoop: listen until ``stopping``; on every (re)connect drop the whole cache."""
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("profile invalidation: cannot LISTEN (%s); the cache TTL applies meanwhile", exc)
                await _wait(stopping, self._reconnect_s)
                continue
            dropped = asyncio.Event()
            conn.add_termination_listener(lambda _c, d=dropped: d.set())
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
                self._cache.invalidate()  # whatever changed while nobody listened
                self.listening.set()
                waiter = asyncio.create_task(dropped.wait())
                stopper = asyncio.create_task(stopping.wait())
                await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
            except PG_ERRORS as exc:
                log.warning("profile invalidation: LISTEN connection failed: %s", exc)
            finally:
                self.listening.clear()
                with contextlib.suppress(*PG_ERRORS):
                    await conn.close(timeout=2)
            if not stopping.is_set():
                await _wait(stopping, self._reconnect_s)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
