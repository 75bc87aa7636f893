"""The token bucket: pure reservation arithmetic, then real concurrent tasks."""

from __future__ import annotations

import asyncio
import time

import pytest

from channels.pacing import TokenBucket, reserve


@pytest.mark.parametrize(
    ("tokens", "elapsed", "rate", "burst", "expected"),
    [
        (5.0, 0.0, 10.0, 5.0, (4.0, 0.0)),  # a token in hand
        (0.0, 0.0, 10.0, 5.0, (-1.0, 0.1)),  # none: wait one interval
        (-2.0, 0.0, 10.0, 5.0, (-3.0, 0.3)),  # queued behind two reservations
        (0.0, 0.25, 10.0, 5.0, (1.5, 0.0)),  # refilled 2.5 tokens
        (4.0, 100.0, 10.0, 5.0, (4.0, 0.0)),  # refill capped at burst
        (0.5, 0.0, 2.0, 1.0, (-0.5, 0.25)),
    ],
)
def test_reserve(
    tokens: float, elapsed: float, rate: float, burst: float, expected: tuple[float, float]
) -> None:
    balance, wait = reserve(tokens, 100.0, 100.0 + elapsed, rate=rate, burst=burst)
    assert (round(balance, 9), round(wait, 9)) == expected


async def test_waiters_are_spread_at_the_rate_with_a_fake_clock() -> None:
    now = [0.0]
    waits: list[float] = []

    async def no_sleep(s: float) -> None:
        waits.append(s)

    bucket = TokenBucket(5, burst=1, clock=lambda: now[0], sleep=no_sleep)
    got = [await bucket.acquire() for _ in range(4)]
    assert [round(w, 6) for w in got] == [0.0, 0.2, 0.4, 0.6]
    now[0] = 10.0  # long idle: back to a full (burst-sized) bucket, no debt carried
    assert await bucket.acquire() == 0.0


async def test_concurrent_tasks_share_one_bucket() -> None:
    bucket = TokenBucket(100, burst=10)
    started = time.monotonic()
    await asyncio.gather(*(bucket.acquire() for _ in range(40)))
    elapsed = time.monotonic() - started
    assert 0.27 <= elapsed < 1.0  # 30 tokens past the burst at 100/s


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
