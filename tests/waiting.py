"""Waiting on a condition instead of sleeping: as fast as the system allows, and not flaky.

A fixed sleep that "gives it time" is both slow (it always waits the worst case) and flaky (the
worst case is a guess). Wait for the state that proves the point instead; for Kafka topics see
``tests.kafka_helpers.wait_until_consumed`` and ``wait_until_quiet``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["until"]


async def until(
    condition: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        await asyncio.sleep(interval)
