"""Profiles from PostgreSQL: one query per poll batch for the cache misses, then a TTL cache.

Profiles are keyed by (tenant, user id): the same id in two tenants is two recipients. An
event without a tenant is in the default tenant ``''``. Unknown users are cached too (negative caching), so a burst for users without a row costs
one query per TTL, not one per batch. A lookup already in flight for a user (the runner starts
the next batch's while the current one is handled) is joined rather than repeated.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from channels.storage_errors import PG_ERRORS, classify_pg_error
from consumers.classifier.profile import Endpoint, Profile
from consumers.classifier.quiet_hours import QuietWindow
from schemas.errors import DependencyUnavailable, RecordError
from schemas.models import Channel, DomainEvent

__all__ = ["LookupRejected", "LookupUnavailable", "ProfileCache", "ProfileKey", "fetch_profiles", "key_of"]

ProfileKey = tuple[str, str]  # (tenant, user_id); tenant '' is the default tenant

# ValueError: asyncpg refused to encode an argument (a user id with a NUL byte, ...).
_LOOKUP_ERRORS: tuple[type[BaseException], ...] = (*PG_ERRORS, ValueError)

# One round trip for recipients, preferences and (enabled) webhook endpoints of many users.
_QUERY = """
SELECT u.tenant, u.id AS user_id, r.user_id IS NOT NULL AS known, r.email, r.phone, r.timezone, r.locale,
       r.quiet_start, r.quiet_end, r.digest,
       (SELECT json_agg(json_build_array(p.category, p.channel, p.enabled))
          FROM herald_preferences p WHERE p.tenant = u.tenant AND p.user_id = u.id) AS prefs,
       (SELECT json_agg(json_build_array(e.endpoint_id, e.event_types) ORDER BY e.endpoint_id)
          FROM herald_webhook_endpoints e WHERE e.owner_id = u.id AND e.disabled_at IS NULL) AS endpoints
FROM unnest($1::text[], $2::text[]) AS u(tenant, id)
LEFT JOIN herald_recipients r ON r.tenant = u.tenant AND r.user_id = u.id
"""


def key_of(event: DomainEvent) -> ProfileKey:
    """Whose profile an event needs: its user in its tenant (none: the default tenant ``''``)."""
    return (event.tenant or "", event.user_id)


class LookupUnavailable(DependencyUnavailable):
    """PostgreSQL did not answer."""


class LookupRejected(RecordError):
    """PostgreSQL refused a user id of the batch (e.g. text it cannot store): a record's fault.

    The runtime splits the batch until the record stands alone and dead-letters it.
    """

    reason = "invalid_event"


def _profile(row: Any) -> Profile:
    prefs: dict[tuple[str, Channel], bool] = {}
    for category, channel, enabled in json.loads(row["prefs"]) if row["prefs"] else ():
        prefs[(category, Channel(channel))] = bool(enabled)
    endpoints = tuple(
        Endpoint(endpoint_id, tuple(types or ("*",)))
        for endpoint_id, types in (json.loads(row["endpoints"]) if row["endpoints"] else ())
    )
    quiet = None
    if row["quiet_start"] is not None and row["quiet_end"] is not None:
        quiet = QuietWindow(row["quiet_start"], row["quiet_end"])
    return Profile(
        user_id=row["user_id"],
        tenant=row["tenant"],
        known=row["known"],
        email=row["email"] or None,
        phone=row["phone"] or None,
        timezone=row["timezone"] or "UTC",
        locale=row["locale"] or None,
        quiet=quiet,
        preferences=prefs,
        endpoints=endpoints,
        digest=row["digest"] is not False,  # no recipients row: on
    )


async def fetch_profiles(pool: asyncpg.Pool, keys: list[ProfileKey]) -> dict[ProfileKey, Profile]:
    """Profiles of ``keys`` (tenant, user id) in one query.

    Raises :class:`LookupUnavailable` on an outage, :class:`LookupRejected` when PostgreSQL refused
    the values (:func:`~channels.storage_errors.classify_pg_error`).
    """
    try:
        rows = await pool.fetch(_QUERY, [t for t, _ in keys], [u for _, u in keys])
    except _LOOKUP_ERRORS as exc:
        if classify_pg_error(exc) == "record":
            raise LookupRejected(f"{type(exc).__name__}: {exc}") from exc
        raise LookupUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return {(row["tenant"], row["user_id"]): _profile(row) for row in rows}


class ProfileCache:
    """A bounded TTL cache in front of :func:`fetch_profiles` (insertion order = age)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl_s: float,
        max_size: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._monotonic = monotonic
        self._entries: dict[ProfileKey, tuple[float, Profile]] = {}
        self._epoch = 0  # bumped by invalidate(): a fetch that overlapped one is not cached
        self._inflight: dict[ProfileKey, asyncio.Future[None]] = {}  # key -> the lookup fetching it now
        self.queries = 0  # round trips made (tests and the benchmark read it)

    def _cached(self, uid: ProfileKey, now: float) -> Profile | None:
        entry = self._entries.get(uid)
        return entry[1] if entry is not None and entry[0] > now else None

    async def get_many(self, keys: Iterable[ProfileKey]) -> dict[ProfileKey, Profile]:
        """The profiles of ``keys`` (tenant, user id); a user without a row gets the defaults."""
        now = self._monotonic()
        found: dict[ProfileKey, Profile] = {}
        missing: list[ProfileKey] = []
        joined: set[asyncio.Future[None]] = set()
        for uid in dict.fromkeys(keys):
            profile = self._cached(uid, now)
            if profile is not None:
                found[uid] = profile
            elif uid in self._inflight:
                joined.add(self._inflight[uid])
                missing.append(uid)  # fetched below unless that lookup brings it
            else:
                missing.append(uid)
        if joined:
            await asyncio.wait(joined)  # their failure is theirs: what they did not bring is fetched here
            left = []
            for uid in missing:
                profile = self._cached(uid, now)
                if profile is None:
                    left.append(uid)
                else:
                    found[uid] = profile
            missing = left
        if missing:
            await self._fetch(missing, found, now)
        return found

    async def _fetch(self, missing: list[ProfileKey], found: dict[ProfileKey, Profile], now: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for uid in missing:
            self._inflight.setdefault(uid, done)
        epoch = self._epoch
        try:
            fetched = await fetch_profiles(self.pool, missing)
        finally:
            for uid in missing:
                if self._inflight.get(uid) is done:
                    del self._inflight[uid]
            done.set_result(None)
        self.queries += 1
        expires = now + self.ttl_s
        for uid in missing:
            profile = fetched.get(uid) or Profile(uid[1], tenant=uid[0])
            found[uid] = profile
            if self._epoch != epoch:  # the row may have changed after we read it: use, don't keep
                continue
            self._entries.pop(uid, None)  # re-insert at the young end
            self._entries[uid] = (expires, profile)
        self._evict()

    def _evict(self) -> None:
        excess = len(self._entries) - self.max_size
        if excess <= 0:
            return
        for uid in list(itertools.islice(self._entries, excess)):
            del self._entries[uid]

    def invalidate(self, key: ProfileKey | None = None) -> None:
        """Drop one (tenant, user id), or everything (None)."""
        self._epoch += 1
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
