"""One SES send quota for every email process: a token bucket in Redis, with a priority reserve.

SES's ``MaxSendRate`` is per account, not per process. Every email process (both lanes, every
replica) takes each send's token from the same Redis bucket, refilled at the account's ``rate``
by one atomic Lua script that reads the server's clock (so processes on different hosts agree).
The **bulk** lane must also take a token from a second bucket refilled at
``(1 - priority_share) * rate``: bulk can never use more than its share, so at least
``priority_share`` of the account's rate is always there for the priority lane, however hard a
marketing burst pushes. Priority may use the whole rate when bulk is idle.

The script never reserves ahead: a caller that finds no token is told how long until the next
one and asks again then, so a queue of bulk callers never stands in front of a priority one.

**Redis down**: each process paces itself locally to ``rate / expected_replicas`` (the
``expected_replicas`` email processes together stay within the account's rate), counts
``herald_ses_quota_fallback_total{lane}``, and tries Redis again after a short cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from channels.pacing import TokenBucket
from consumers.runtime import metrics
from schemas.models import Lane

__all__ = ["BURST_S", "SharedQuota", "lane_rates"]

log = logging.getLogger(__name__)

BURST_S = 0.1  # a bucket holds at most this many seconds of its rate (at least one token)

# KEYS[1] the account bucket, KEYS[2] (bulk only) the bulk bucket; ARGV: rate, burst per key.
# Returns "0" when a token was taken from every bucket, else the seconds until one can be.
_TAKE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) + tonumber(now_t[2]) / 1000000
local level = {}
local wait = 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(v[1])
  local ts = tonumber(v[2])
  if tokens == nil or ts == nil then tokens = burst; ts = now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  level[i] = tokens
  if tokens < 1 then wait = math.max(wait, (1 - tokens) / rate) end
end
if wait > 0 then return tostring(wait) end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'tokens', tostring(level[i] - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], 60000)
end
return '0'
"""


def lane_rates(rate: float, lane: Lane, priority_share: float) -> list[float]:
    """The buckets a lane's send draws from: the account's, plus bulk's own capped one. Pure."""
    if lane is Lane.BULK:
        return [rate, rate * (1.0 - priority_share)]
    return [rate]


class SharedQuota:
    """The :class:`~channels.pacing.Pacer` of an email process: account-wide, per lane."""

    def __init__(
        self,
        client: redis_asyncio.Redis,
        *,
        rate: float,
        lane: Lane,
        priority_share: float,
        expected_replicas: int,
        key: str,
        cooldown_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.lane = lane
        self._client = client
        self._take = client.register_script(_TAKE)
        rates = lane_rates(self.rate, lane, priority_share)
        names = [f"{key}:account", f"{key}:bulk"][: len(rates)]
        self._keys = names
        self._args: list[float] = []
        for r in rates:
            self._args += [r, max(1.0, r * BURST_S)]
        self._local = TokenBucket(max(1e-3, min(rates) / max(1, expected_replicas)), burst=1.0)
        self._fallback = metrics.SES_QUOTA_FALLBACK.labels(lane.value)
        self._cooldown_s = cooldown_s
        self._redis_after = 0.0
        self._sleep = sleep

    async def acquire(self) -> float:
        """Wait for a token of the account's quota; return how long we waited (seconds)."""
        waited = 0.0
        while True:
            if time.monotonic() < self._redis_after:
                return waited + await self._local_token()
            try:
                answer = await self._take(keys=self._keys, args=self._args)
            except (RedisError, OSError) as exc:
                log.warning(
                    "SES quota: Redis unavailable (%s); pacing locally at %.2f/s", exc, self._local.rate
                )
                self._redis_after = time.monotonic() + self._cooldown_s
                continue
            wait = float(answer.decode() if isinstance(answer, bytes) else answer)
            if wait <= 0:
                return waited
            wait *= 1.0 + random.random() * 0.2  # callers that missed together do not ask together
            await self._sleep(wait)
            waited += wait

    async def _local_token(self) -> float:
        self._fallback.inc()
        return await self._local.acquire()
