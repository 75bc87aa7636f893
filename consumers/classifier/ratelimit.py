"""Rate limits per user x channel x clock hour: the pure policy and the atomic Redis limiter.

A bucket is a Redis SET of the idempotency keys it admitted, so

* admission is atomic (one Lua script checks and adds; no read-modify-write race),
* a replayed batch (crash before commit) is admitted again rather than counted twice,
* memory per bucket is bounded by the limit itself (only admitted keys are stored).

A whole poll batch is one ``EVALSHA`` over all its buckets: one round trip, three packed
arguments. The script names its keys in ARGV, not KEYS, so it needs a single Redis node (a
standalone instance or Sentinel); Redis Cluster would need one call per slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import quote

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from channels.storage_errors import classify_redis_error
from schemas.errors import DependencyUnavailable, RecordError
from schemas.models import Channel, Tier

__all__ = [
    "LimitRequest",
    "LimiterDown",
    "LimiterRejected",
    "LimiterUnavailable",
    "RateLimiter",
    "bucket_hour",
    "bucket_key",
    "bucket_scope",
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
    limit = limits.get(tier, 0)  # a StrEnum member finds its value's entry (``.value`` is slow)
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
    return LimiterDown.DEFER if tier in defer_tiers else LimiterDown.ALLOW


def bucket_key(prefix: str, user_id: str, channel: Channel, now: datetime, tenant: str = "") -> str:
    """The bucket of the clock hour containing ``now`` (fixed window, UTC hours), per (tenant, user):
    the same id in two tenants is two recipients with two budgets. The default tenant's keys are
    ``prefix:user:...``; another tenant's ``prefix@tenant:user:...`` (``@`` never follows the prefix
    otherwise, so the two never meet)."""
    return f"{bucket_scope(prefix, user_id, tenant)}{channel}:{bucket_hour(now)}"


def bucket_scope(prefix: str, user_id: str, tenant: str = "") -> str:
    """The start of all of one (tenant, user)'s :func:`bucket_key` s, computed once per event."""
    user = user_id.replace("\n", "%0A")  # newline separates buckets in the script's arguments
    scope = f"{prefix}@{quote(tenant, safe='')}" if tenant else prefix
    return f"{scope}:{user}:"


def bucket_hour(now: datetime) -> int:
    """The end of :func:`bucket_key`: the UTC clock hour containing ``now``."""
    return int(now.timestamp()) // _HOUR


@dataclass(frozen=True, slots=True)
class LimitRequest:
    bucket: str
    member: str  # the message's idempotency key
    limit: int


class LimiterRejected(RecordError):
    """Redis refused a rate-limit key or value of the batch (a record's fault, not an outage)."""

    reason = "invalid_event"


class LimiterUnavailable(DependencyUnavailable):
    """Redis did not answer; the caller applies :func:`on_limiter_down`."""


# ARGV: ttl, then buckets, members and limits, each list joined by "\n" (three arguments for a whole
# batch: packing thousands of separate arguments costs more client CPU than the script itself).
# Returns one string of "1"/"0", a character per request, in order.
_SCRIPT = """
local ttl = tonumber(ARGV[1])
local buckets, members, limits = {}, {}, {}
for v in string.gmatch(ARGV[2], "[^\\n]+") do buckets[#buckets + 1] = v end
for v in string.gmatch(ARGV[3], "[^\\n]+") do members[#members + 1] = v end
for v in string.gmatch(ARGV[4], "[^\\n]+") do limits[#limits + 1] = tonumber(v) end
local out = {}
for i = 1, #buckets do
  local key = buckets[i]
  if redis.call('SADD', key, members[i]) == 0 then
    out[i] = '1'  -- admitted before: a replay
  else
    local n = redis.call('SCARD', key)
    if n > limits[i] then
      redis.call('SREM', key, members[i])
      out[i] = '0'
    else
      if n == 1 then redis.call('EXPIRE', key, ttl) end
      out[i] = '1'
    end
  end
end
return table.concat(out)
"""


class RateLimiter:
    """The Redis side. Fails fast: a call that takes longer than ``timeout_s`` counts as an outage,
    and after an outage Redis is not asked again for ``cooldown_s`` (every batch meanwhile is
    classified as "limiter down" at once, so critical traffic never waits on a dead Redis)."""

    def __init__(
        self,
        client: redis_asyncio.Redis,
        *,
        timeout_s: float = 0.5,
        cooldown_s: float = 5.0,
        chunk: int = 2000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._script = client.register_script(_SCRIPT)
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._chunk = chunk  # keeps one script call short: Redis runs it without interleaving
        self._monotonic = monotonic
        self._down_until = 0.0

    async def acquire(self, requests: Sequence[LimitRequest]) -> list[bool]:
        """Admit or refuse each request, atomically per call; raises :class:`LimiterUnavailable`."""
        if self._monotonic() < self._down_until:
            raise LimiterUnavailable("Redis failed recently; not asked again until the cool-down ends")
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._acquire(requests)
        except (RedisError, OSError, TimeoutError, UnicodeError) as exc:
            if classify_redis_error(exc) == "record":  # Redis answers: the batch's values are at fault
                raise LimiterRejected(f"{type(exc).__name__}: {exc}") from exc
            self._down_until = self._monotonic() + self._cooldown_s
            raise LimiterUnavailable(f"Redis (REDIS_URL) failed: {type(exc).__name__}: {exc}") from exc

    async def _acquire(self, requests: Sequence[LimitRequest]) -> list[bool]:
        admitted: list[bool] = []
        ttl = str(_HOUR + 300)  # outlives its hour: a bucket is never recreated empty mid-hour
        for start in range(0, len(requests), self._chunk):
            part = requests[start : start + self._chunk]
            args = [
                ttl,
                "\n".join([r.bucket for r in part]),
                "\n".join([r.member for r in part]),
                "\n".join([str(r.limit) for r in part]),
            ]
            result = await self._script(keys=[], args=args)
            if isinstance(result, str):  # a client made with decode_responses=True
                result = result.encode()
            if len(result) != len(part):
                raise RedisError(f"rate-limit script answered {len(result)} of {len(part)}")
            admitted += [c == 49 for c in result]  # b"1"
        return admitted
