"""Where a consumer's batches spend their time: wall seconds per step, summed over batches.

The runner times its steps (poll, decode, handle, enqueue, wait for the previous batch's acks
and commit) and a handler may time its own inside ``handle`` (the classifier: profile lookup,
rate limiter, timers). ``make bench`` prints the per-batch timeline from these sums, which says
whether a process waits (on the broker, PostgreSQL, Redis) or computes. Two clock reads per step
and batch: nothing measurable next to a batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Steps"]


class Steps:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.batches = 0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def per_batch_ms(self) -> dict[str, float]:
        """Mean milliseconds per batch in each step."""
        n = max(1, self.batches)
        return {name: s / n * 1000 for name, s in self.seconds.items()}
