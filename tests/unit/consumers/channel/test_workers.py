"""KeyWorkers: every key once, in order within a key, at most ``size`` at once; a worker sleeping
before a retry hands the remaining keys to a new worker."""

from __future__ import annotations

import asyncio

import pytest

from consumers.channel.workers import KeyWorkers


async def test_every_key_runs_once_with_at_most_size_at_once() -> None:
    workers = KeyWorkers(3)
    running, peak, seen = 0, 0, []

    async def run_key(key: list[int]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for i in key:  # one key's items in order
            await asyncio.sleep(0)
            seen.append(i)
        running -= 1

    keys = [[k * 10 + i for i in range(3)] for k in range(10)]
    await workers.run(run_key, keys)
    assert sorted(seen) == sorted(i for key in keys for i in key)
    for key in keys:
        assert [i for i in seen if i in key] == key
    assert peak == 3


async def test_a_sleeping_worker_hands_the_waiting_keys_to_another() -> None:
    workers = KeyWorkers(1)
    done: list[str] = []
    asleep = asyncio.Event()

    async def run_key(key: str) -> None:
        if key == "slow":
            workers.sleeping()
            asleep.set()
            await asyncio.sleep(0.05)
        done.append(key)

    await workers.run(run_key, ["slow", "a", "b"])
    assert done == ["a", "b", "slow"]  # not held behind the sleeper
    assert asleep.is_set()


async def test_a_worker_error_is_raised_after_the_other_keys_ran() -> None:
    workers = KeyWorkers(2)
    done: list[int] = []

    async def run_key(key: int) -> None:
        if key == 0:
            raise RuntimeError("bug")
        await asyncio.sleep(0)
        done.append(key)

    with pytest.raises(RuntimeError, match="bug"):
        await workers.run(run_key, range(5))
    assert done == [1, 2, 3, 4]


async def test_cancelling_the_run_cancels_its_workers() -> None:
    workers = KeyWorkers(2)
    started = asyncio.Event()
    cancelled: list[int] = []

    async def run_key(key: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    task = asyncio.create_task(workers.run(run_key, range(4)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert sorted(cancelled) == [0, 1]
