"""The providers' circuit breakers, shared by every replica through Redis.

One Redis string per (channel, provider) holds the :class:`~consumers.channel.breaker.BreakerState`
as JSON. A change is read, computed by the pure functions of :mod:`consumers.channel.breaker`,
and written back by an atomic compare-and-set script (one round trip; on a lost race the script
returns the current value and the change is recomputed on it). So ten replicas agree that SES
is down, and the state machine exists once, in Python, where it is tested.

Time is wall-clock seconds (``clock``), the one clock replicas share.

Redis is not asked on every call: that made one hot key the bottleneck of a busy channel. A
process serialises its own changes per provider (a lock, so replicas race each other but never
themselves), trusts the state it last saw for ``sync_s`` (a closed breaker admits without a round
trip), and folds successes into the shared state in batches (at least every ``sync_s``). A
retryable failure, and any result while the breaker is not closed, is written at once: opening
is never delayed.

When Redis fails or answers slower than ``timeout_s``, the breaker of this process carries on
alone for ``local_for_s`` (a process-local state per provider, same functions), then Redis is
tried again: a Redis outage costs the agreement between replicas, never a delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from consumers.channel.breaker import BreakerPolicy, BreakerState, Circuit, Result, admit, record, retry_in
from consumers.runtime import metrics

__all__ = ["Breakers"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# KEYS[1] state key; ARGV[1] the value the change was computed from ('' = absent), ARGV[2] the
# new value, ARGV[3] TTL (s). 1 when written; else {current value} to recompute on.
_CAS = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return {cur}
"""

_TTL_S = 86_400  # a provider nobody used for a day starts closed again
_MAX_RACES = 16
_MAX_PENDING = 256  # successes folded into one write at most


class Breakers:
    """The breakers of one channel's providers. ``await admit(p)`` before a call, ``record`` after."""

    def __init__(
        self,
        redis: redis_asyncio.Redis,
        *,
        channel: str,
        policy: BreakerPolicy,
        namespace: str = "herald:breaker",
        timeout_s: float = 0.25,
        local_for_s: float = 5.0,
        sync_s: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.policy = policy
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.local_for_s = local_for_s
        self.sync_s = sync_s
        self.clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._known: dict[str, tuple[BreakerState, float]] = {}  # last state seen, monotonic when
        self._pending: dict[str, list[tuple[float, Result]]] = {}  # successes not written yet
        self._pending_since: dict[str, float] = {}
        self._cas = redis.register_script(_CAS)
        self._local: dict[str, BreakerState] = {}
        self._local_until = 0.0  # monotonic: use the local breakers until then
        self._seen: dict[str, Circuit] = {}

    def key(self, provider: str) -> str:
        return f"{self.namespace}:{self.channel}:{provider}"

    async def admit(self, provider: str) -> bool:
        """Whether a call may go to ``provider`` now (an open breaker says no; half-open: a probe)."""
        known = self._fresh(provider)
        if known is not None and known.circuit is Circuit.CLOSED:
            return True
        return await self._change(provider, lambda s, now: admit(s, self.policy, now))

    async def record(self, provider: str, result: Result) -> None:
        """Count a finished call (successes of a closed breaker are written in batches)."""
        pending = self._pending.setdefault(provider, [])
        if not pending:
            self._pending_since[provider] = time.monotonic()
        pending.append((self.clock(), result))
        known = self._fresh(provider)
        urgent = result is Result.RETRYABLE or known is None or known.circuit is not Circuit.CLOSED
        due = time.monotonic() - self._pending_since[provider] >= self.sync_s
        if urgent or due or len(pending) >= _MAX_PENDING:
            await self.flush(provider)

    async def flush(self, provider: str) -> None:
        """Write the results not written yet, in the order they happened."""
        results, self._pending[provider] = self._pending.get(provider, []), []
        if not results:
            return

        def fold(state: BreakerState, now: float) -> tuple[BreakerState, None]:
            for at, result in results:
                state = record(state, self.policy, at, result)
            return state, None

        await self._change(provider, fold)

    def _fresh(self, provider: str) -> BreakerState | None:
        entry = self._known.get(provider)
        if entry is None or time.monotonic() - entry[1] > self.sync_s:
            return None
        return entry[0]

    async def retry_in(self, provider: str) -> float:
        """Seconds until ``provider`` takes a probe (0 unless open)."""
        return await self._change(provider, lambda s, now: (s, retry_in(s, self.policy, now)))

    async def state(self, provider: str) -> BreakerState:
        return await self._change(provider, lambda s, now: (s, s))

    # -- the read-compute-write loop ----------------------------------------------------------
    async def _change(
        self, provider: str, change: Callable[[BreakerState, float], tuple[BreakerState, T]]
    ) -> T:
        async with self._locks[provider]:  # waiting for our own turn is not Redis being slow
            return await self._change_locked(provider, change)

    async def _change_locked(
        self, provider: str, change: Callable[[BreakerState, float], tuple[BreakerState, T]]
    ) -> T:
        if time.monotonic() >= self._local_until:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._shared(provider, change)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning(
                    "breaker %s/%s: Redis unavailable (%s); local breaker for %.0fs",
                    self.channel,
                    provider,
                    type(exc).__name__,
                    self.local_for_s,
                )
                self._local_until = time.monotonic() + self.local_for_s
        now = self.clock()
        state, value = change(self._local.get(provider) or BreakerState(since=now, window_start=now), now)
        self._local[provider] = state
        self._observe(provider, state)
        return value

    async def _shared(
        self, provider: str, change: Callable[[BreakerState, float], tuple[BreakerState, T]]
    ) -> T:
        key = self.key(provider)
        raw: Any = await self.redis.get(key)
        current = raw.decode() if isinstance(raw, bytes) else (raw or "")
        for _ in range(_MAX_RACES):
            now = self.clock()
            state = BreakerState.from_json(current) if current else BreakerState(since=now, window_start=now)
            new, value = change(state, now)
            if new == state and current:
                self._observe(provider, state)
                return value
            answer = await self._cas(keys=[key], args=[current, new.to_json(), _TTL_S])
            if answer == 1:
                self._local[provider] = new  # the starting point if Redis goes away
                self._observe(provider, new)
                return value
            current = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
        raise TimeoutError(f"breaker {key}: lost {_MAX_RACES} races in a row")

    def _observe(self, provider: str, state: BreakerState) -> None:
        self._known[provider] = (state, time.monotonic())
        metrics.PROVIDER_CIRCUIT_STATE.labels(self.channel, provider).set(state.circuit.gauge)
        before = self._seen.get(provider, Circuit.CLOSED)
        if state.circuit is not before:
            log.warning("breaker %s/%s: %s -> %s", self.channel, provider, before.value, state.circuit.value)
        self._seen[provider] = state.circuit
