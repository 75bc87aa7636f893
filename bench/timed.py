"""A consumer that notes when it first got records and when its commits covered a total."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.common import Timing
from bench.cost import self_cpu_s

__all__ = ["TimedConsumer", "time_runner", "timed_consumer_factory", "until_done"]


class TimedConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    total: int = 0
    first_at: float | None = None
    first_cpu: float = 0.0  # this process's CPU seconds when the first records arrived
    end_cpu: float = 0.0  # ... and when the commit covering the total returned
    done: asyncio.Event

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._committed: dict[Any, int] = {}

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        batch = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        if batch and type(self).first_at is None:
            type(self).first_at = time.perf_counter()
            type(self).first_cpu = self_cpu_s()
        return batch

    async def commit(self, offsets: Any = None) -> None:
        await super().commit(offsets)
        self._committed.update(offsets or {})
        if sum(self._committed.values()) >= type(self).total and not type(self).done.is_set():
            type(self).end_cpu = self_cpu_s()
            type(self).done.set()


def timed_consumer_factory(total: int) -> type[TimedConsumer]:
    """A fresh subclass (its own clock and event) for one measured run."""
    cls = type("Timed", (TimedConsumer,), {"total": total, "first_at": None, "done": asyncio.Event()})
    return cls


async def until_done(done: asyncio.Event, worker: asyncio.Task[Any], timeout: float, what: str) -> None:
    """Wait for ``done``; raise if ``worker`` (what sets it) ends first, or after ``timeout`` s."""
    waiter = asyncio.create_task(done.wait())
    try:
        await asyncio.wait({waiter, worker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if done.is_set():
        return
    if worker.done():
        worker.result()  # its exception, if it raised
        raise RuntimeError(f"{what} stopped before it was done")
    raise TimeoutError(f"{what} not done in {timeout:.0f}s")


async def time_runner(
    handler: Any, *, topic: str, group: str, total: int, producer: Any, settings: Any, timeout: float
) -> Timing:
    """Run ``handler`` in a real Runner until its commits cover ``total`` records of ``topic``
    (at most ``timeout`` seconds: the caller scales it with the rates measured so far).

    The clock, and this process's CPU count, run from the first poll that returned records to
    the commit that covered the last one: group start-up is not counted.
    """
    from consumers.runtime.runner import Runner

    consumer_cls = timed_consumer_factory(total)
    runner: Runner[Any] = Runner(
        handler,
        topics=[topic],
        group_id=group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=settings.runtime,
        consumer_factory=consumer_cls,
    )
    task = asyncio.create_task(runner.run())
    try:
        await until_done(consumer_cls.done, task, timeout, f"{handler.name} over {total:,} records")
        end = time.perf_counter()
    finally:
        runner.stop()
        await task
    assert consumer_cls.first_at is not None
    timeline = runner.steps.per_batch_ms()
    inner = getattr(handler, "steps", None)
    if inner is not None:
        inner.batches = runner.steps.batches
        timeline |= {f"handle > {name}": ms for name, ms in inner.per_batch_ms().items()}
    return Timing(
        end - consumer_cls.first_at,
        total,
        consumer_cls.end_cpu - consumer_cls.first_cpu,
        timeline,
        runner.steps.batches,
    )
