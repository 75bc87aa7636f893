"""A measured run ends when it is done, or says why it never will: no phase waits forever."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from bench.timed import until_done


async def _sets_after(done: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    done.set()
    await asyncio.sleep(3600)  # a runner keeps running after it is done


async def _crashes() -> None:
    await asyncio.sleep(0.01)
    raise ConnectionError("broker gone")


async def _returns() -> None:
    await asyncio.sleep(0.01)


async def _run(worker: Coroutine[Any, Any, None], done: asyncio.Event, timeout: float) -> None:
    task = asyncio.ensure_future(worker)
    try:
        await until_done(done, task, timeout, "test run")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_returns_when_done() -> None:
    async def main() -> None:
        done = asyncio.Event()
        await _run(_sets_after(done, 0.05), done, 10)
        assert done.is_set()

    asyncio.run(main())


def test_a_worker_that_crashes_raises_its_error_at_once() -> None:
    async def main() -> None:
        await _run(_crashes(), asyncio.Event(), 3600)

    with pytest.raises(ConnectionError, match="broker gone"):
        asyncio.run(main())


def test_a_worker_that_stops_without_finishing_is_an_error() -> None:
    async def main() -> None:
        await _run(_returns(), asyncio.Event(), 3600)

    with pytest.raises(RuntimeError, match="stopped before it was done"):
        asyncio.run(main())


def test_a_run_that_never_finishes_times_out() -> None:
    async def main() -> None:
        await _run(_sets_after(asyncio.Event(), 3600), asyncio.Event(), 0.1)

    with pytest.raises(TimeoutError, match="not done in 0s"):
        asyncio.run(main())
