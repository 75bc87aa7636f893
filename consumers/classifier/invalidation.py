"""Profile changes reach the classifier's cache within one NOTIFY: LISTEN on ``herald_profiles``.

Migration 070's triggers (payload: ``{"tenant": ..., "user_id": ...}`` since migration 230) notify at commit of any write to ``herald_recipients`` or
``herald_preferences`` (the admin API, the apps' preference routes, SQL by hand). The cache drops
that (tenant, user), so the next event reads the new profile. While the LISTEN connection is down
notifications can be missed: on every (re)connect the whole cache is dropped, and the TTL
(``classifier.lookup_cache_ttl_s``) bounds staleness in between.
"""

from __future__ import annotations

import asyncio
import json

from consumers.classifier.lookup import ProfileCache, ProfileKey
from consumers.infra.pg_listen import PgListener

__all__ = ["CHANNEL", "ProfileInvalidator", "profile_key"]

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
        self._cache = cache
        self._listener = PgListener(
            dsn,
            CHANNEL,
            self._on_payload,
            # whatever changed while nobody listened: drop it all; the TTL bounds staleness meanwhile
            on_listen=lambda _reconnected: cache.invalidate(),
            label="profile invalidation",
            reconnect_s=reconnect_s,
        )
        self.listening = self._listener.listening
        self.received = 0

    def _on_payload(self, payload: str) -> None:
        self.received += 1
        self._cache.invalidate(profile_key(payload))  # unreadable: drop all rather than keep a stale one

    async def run(self, stopping: asyncio.Event) -> None:
        """A BackgroundLoop: listen until ``stopping``; on every (re)connect drop the whole cache."""
        await self._listener.run(stopping)
