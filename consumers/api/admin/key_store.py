"""Service API keys in PostgreSQL (``herald_api_keys``): create, revoke, list, verify.

Verification reads the row through a short in-process cache (``admin.key_cache_ttl_s``: a revoked
key stops working within that) and records the last use in memory; :meth:`KeyStore.flush_last_used`
writes every key's last use in one statement, run periodically, so a request costs no write.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from consumers.api.admin.keys import NewKey, Scope, hash_secret, new_key, parse_key

__all__ = ["KeyInfo", "KeyStore", "ServiceKey"]

_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """An authenticated key: who is calling the admin API."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    tenant: str | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    tenant: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Row:
    key: ServiceKey
    secret_hash: bytes
    revoked: bool


class KeyStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        pepper: bytes,
        *,
        cache_ttl_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self._pepper = pepper
        self.cache_ttl_s = cache_ttl_s
        self._monotonic = monotonic
        # LRU: junk ids (cached as unknown) push out the least recently used entries, not every
        # real key at once; the per-client limit on uncached lookups (admin auth) bounds the rest.
        self._cache: OrderedDict[str, tuple[float, _Row | None]] = OrderedDict()
        self._last_used: dict[str, float] = {}  # key id → wall-clock time of its last use

    async def create(self, name: str, scopes: Sequence[Scope], tenant: str | None = None) -> NewKey:
        key = new_key(secrets.token_bytes)
        await self.pool.execute(
            "INSERT INTO herald_api_keys (key_id, name, secret_hash, scopes, tenant) VALUES ($1, $2, $3, $4, $5)",
            key.key_id,
            name,
            hash_secret(self._pepper, key.secret),
            [s.value for s in scopes],
            tenant,
        )
        return key

    async def revoke(self, key_id: str) -> bool:
        """True when the key existed and was active; the cache forgets it at once in this process."""
        status = await self.pool.execute(
            "UPDATE herald_api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", key_id
        )
        self._cache.pop(key_id, None)
        return bool(status.endswith(" 1"))

    async def all(self) -> list[KeyInfo]:
        rows = await self.pool.fetch(
            "SELECT key_id, name, scopes, tenant, created_at, revoked_at, last_used_at FROM herald_api_keys "
            "ORDER BY created_at, key_id"
        )
        return [
            KeyInfo(
                r["key_id"],
                r["name"],
                tuple(r["scopes"]),
                r["tenant"],
                r["created_at"],
                r["revoked_at"],
                r["last_used_at"],
            )
            for r in rows
        ]

    def cached(self, token: str) -> bool:
        """Whether verifying ``token`` costs no PostgreSQL lookup (its key id's row is cached and fresh)."""
        parsed = parse_key(token)
        if parsed is None:
            return True  # refused without a lookup
        entry = self._cache.get(parsed[0])
        return entry is not None and entry[0] > self._monotonic()

    async def verify(self, token: str) -> ServiceKey | None:
        """The key a bearer credential names, if it is well formed, known, matching and not revoked."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        row = await self._row(key_id)
        if row is None or row.revoked:
            return None
        if not hmac.compare_digest(row.secret_hash, hash_secret(self._pepper, secret)):
            return None
        self._last_used[key_id] = time.time()
        return row.key

    async def _row(self, key_id: str) -> _Row | None:
        now = self._monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key_id)
            return cached[1]
        r = await self.pool.fetchrow(
            "SELECT key_id, name, secret_hash, scopes, tenant, revoked_at IS NOT NULL AS revoked "
            "FROM herald_api_keys WHERE key_id = $1",
            key_id,
        )
        row = (
            None
            if r is None
            else _Row(
                ServiceKey(r["key_id"], r["name"], tuple(r["scopes"]), r["tenant"]),
                bytes(r["secret_hash"]),
                r["revoked"],
            )
        )
        self._cache[key_id] = (now + self.cache_ttl_s, row)
        self._cache.move_to_end(key_id)
        if len(self._cache) > _CACHE_MAX:  # unknown ids are cached too
            self._cache.popitem(last=False)
        return row

    async def flush_last_used(self) -> int:
        """Write the last use of every key used since the previous flush, in one statement."""
        if not self._last_used:
            return 0
        pending, self._last_used = self._last_used, {}
        ids = list(pending)
        try:
            await self._write_last_used(ids, [pending[i] for i in ids])
        except BaseException:
            for key_id, at in pending.items():  # kept for the next flush (newer uses win)
                self._last_used[key_id] = max(at, self._last_used.get(key_id, 0.0))
            raise
        return len(ids)

    async def _write_last_used(self, ids: list[str], ats: list[float]) -> None:
        await self.pool.execute(
            "UPDATE herald_api_keys k SET last_used_at = to_timestamp(u.at) "
            "FROM unnest($1::text[], $2::float8[]) AS u(id, at) "
            "WHERE k.key_id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < to_timestamp(u.at))",
            ids,
            ats,
        )
