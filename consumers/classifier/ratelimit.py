"""Rate limits per user x channel x clock hour: the pure policy and the atomic Redis limiter.

A bucket is a Redis SET of the idempotency keys it admitted, so

* admission is atomic (one Lua script checks and adds; no read-modify-write race),
* a replayed batch (crash before commit) is admitted again rather than counted twice,
* memory per bucket is bounded by the limit itself (only admitted keys are stored).

A whole poll batch is one ``EVALSHA`` over all its buckets: one round trip. All keys of a
call must live on one Redis node (fine for a single instance or Sentinel; Redis Cluster
would need a hash tag per user and one call per slot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from schemas.models import Channel, Tier

__all__ = [
    "LimitRequest",
    "LimiterDown",
    "LimiterUnavailable",
    "RateLimiter",
    "bucket_key",
    "limit_for",
    "on_limiter_down",
]

_HOUR = 3600


def limit_for(tier: Tier, limits: Mapping[str, int]) -> int | None:
    """Messages allowed per user x channel x hour for a tier; None = unlimited.

    Critical is never limited, whatever the configuration says; a missing or 0 entry means
    unlimited.
    """
    if tier is Tier.CRITICAL:
        return None
    limit = limits.get(tier.value, 0)
    return limit if limit > 0 else None


class LimiterDown(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"


def on_limiter_down(tier: Tier, defer_tiers: Sequence[str]) -> LimiterDown:
    """What to do with a rate-limited message when Redis cannot answer.

    Never blocks critical or high (they must flow); by default only low (marketing) waits
    for the limiter to come back, everything else fails open (counted in a metric).
    """
    if tier in (Tier.CRITICAL, Tier.HIGH):
        return LimiterDown.ALLOW
    return LimiterDown.DEFER if tier.value in defer_tiers else LimiterDown.ALLOW


def bucket_key(prefix: str, user_id: str, channel: Channel, now: datetime) -> str:
    """The bucket of the clock hour containing ``now`` (fixed window, UTC hours)."""
    return f"{prefix}:{user_id}:{channel.value}:{int(now.timestamp()) // _HOUR}"


@dataclass(frozen=True, slots=True)
class LimitRequest:
    bucket: str
    member: str  # the message's idempotency key
    limit: int


class LimiterUnavailable(Exception):
    """Redis did not answer; the caller applies :func:`on_limiter_down`."""


# KEYS[i]: bucket; ARGV: ttl, then (member, limit) pairs. Returns 1/0 per key, in order.
_SCRIPT = """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local member = ARGV[2 * i]
  local limit = tonumber(ARGV[2 * i + 1])
  if redis.call('SISMEMBER', key, member) == 1 then
    out[i] = 1
  elseif redis.call('SCARD', key) < limit then
    redis.call('SADD', key, member)
    if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ttl) end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


class RateLimiter:
    def __init__(self, client: redis_asyncio.Redis, *, chunk: int = 2000) -> None:
        self._script = client.register_script(_SCRIPT)
        self._chunk = chunk  # keeps one script call short: Redis runs it without interleaving

    async def acquire(self, requests: Sequence[LimitRequest]) -> list[bool]:
        """Admit or refuse each request, atomically per call; raises :class:`LimiterUnavailable`."""
        admitted: list[bool] = []
        ttl = str(_HOUR + 300)  # outlives its hour: a bucket is never recreated empty mid-hour
        try:
            for start in range(0, len(requests), self._chunk):
                part = requests[start : start + self._chunk]
                args: list[str] = [ttl]
                for r in part:
                    args += (r.member, str(r.limit))
                result = await self._script(keys=[r.bucket for r in part], args=args)
                admitted += [bool(x) for x in result]
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return admitted
