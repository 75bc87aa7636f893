"""Per-token request rate limit: a fixed window counter in Redis, counted atomically by a script.

INCR and the first PEXPIRE run in one Lua script, so a crash between them cannot leave a
counter without expiry (which would lock the token out for good). When Redis does not
answer the API fails open: the inbox should stay readable through a cache outage, and the
limit guards capacity, not security (tokens are still verified).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

__all__ = ["RateDecision", "RateLimiter"]

log = logging.getLogger(__name__)

_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the window ends


class RateLimiter:
    def __init__(self, redis: redis_asyncio.Redis, *, limit: int, window_s: int, prefix: str) -> None:
        self.limit = limit
        self.window_ms = window_s * 1000
        self.prefix = prefix
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)
        self._last_warning = 0.0

    async def hit(self, token_id: str) -> RateDecision:
        if self.limit <= 0:
            return RateDecision(True, 0, 0, 0.0)
        try:
            count, ttl_ms = await self._script(keys=[f"{self.prefix}:{token_id}"], args=[self.window_ms])
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return RateDecision(True, self.limit, self.limit, 0.0)
        count, ttl_ms = int(count), int(ttl_ms)
        return RateDecision(count <= self.limit, self.limit, max(0, self.limit - count), ttl_ms / 1000)

    async def peek(self, token_id: str) -> RateDecision:
        """Where ``token_id`` stands without counting a hit: refused once ``limit`` hits are counted."""
        if self.limit <= 0:
            return RateDecision(True, 0, 0, 0.0)
        key = f"{self.prefix}:{token_id}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                count, ttl_ms = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return RateDecision(True, self.limit, self.limit, 0.0)
        n = int(count or 0)
        return RateDecision(n < self.limit, self.limit, max(0, self.limit - n), max(0, int(ttl_ms)) / 1000)

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning("rate limiter unavailable, allowing requests: %s", exc)
