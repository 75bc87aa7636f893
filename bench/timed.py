"""A consumer that notes when it first got records and when its commits covered a total."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

__all__ = ["TimedConsumer", "timed_consumer_factory"]


class TimedConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    total: int = 0
    first_at: float | None = None
    done: asyncio.Event

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._committed: dict[Any, int] = {}

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        batch = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        if batch and type(self).first_at is None:
            type(self).first_at = time.perf_counter()
        return batch

    async def commit(self, offsets: Any = None) -> None:
        await super().commit(offsets)
        self._committed.update(offsets or {})
        if sum(self._committed.values()) >= type(self).total:
            type(self).done.set()


def timed_consumer_factory(total: int) -> type[TimedConsumer]:
    """A fresh subclass (its own clock and event) for one measured run."""
    cls = type("Timed", (TimedConsumer,), {"total": total, "first_at": None, "done": asyncio.Event()})
    return cls
