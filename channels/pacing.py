"""An async token bucket shared by every task of a process (SES MaxSendRate, SNS SMS TPS).

Callers reserve a token under a lock and sleep *outside* it: waiters are served in arrival
order, and a burst of 64 concurrent sends is spread at exactly ``rate`` per second instead of
racing. The balance may go negative; that is the queue of reservations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["Pacer", "TokenBucket", "reserve"]


class Pacer(Protocol):
    """What an adapter waits on before each provider call: this process's bucket, or an
    account-wide one shared by every process (``consumers/channel/quota.py``)."""

    rate: float

    async def acquire(self) -> float: ...


def reserve(tokens: float, last: float, now: float, *, rate: float, burst: float) -> tuple[float, float]:
    """Take one token: (new balance, seconds to wait before using it). Pure."""
    balance = min(burst, tokens + (now - last) * rate) - 1.0
    wait = 0.0 if balance >= 0 else -balance / rate
    return balance, wait


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for one token; return how long we waited (seconds)."""
        async with self._lock:
            now = self._clock()
            self._tokens, wait = reserve(self._tokens, self._last, now, rate=self.rate, burst=self.burst)
            self._last = now
        if wait > 0:
            await self._sleep(wait)
        return wait
