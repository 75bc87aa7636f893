"""A batch stuck on a slow dependency shows at once: not ready, ``herald_ready`` 0 and
``herald_batch_age_seconds`` growing (the lag gauge is measured between batches); then recovers.

Before, readiness was only updated between batches, so a consumer blocked on a stalled dependency
looked healthy (ready, and the lag as it stood when the batch was taken) for as long as the stall
lasted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import REGISTRY

from consumers.emitter import build_event
from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import Incoming, Output, Result
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from tests.kafka_helpers import produce_raw, wait_for_records


class _Slow:
    """Forwards records, but the first batch waits until the test lets it go (a stalled dependency)."""

    name = "slow-dependency"

    def __init__(self, target: str) -> None:
        self.target = target
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def decode(self, raw: bytes) -> bytes:
        return raw

    async def handle(self, batch: Sequence[Incoming[bytes]]) -> Sequence[Result]:
        self.entered.set()
        await self.release.wait()
        return [[Output(self.target, item.value, item.key)] for item in batch]


def _ready_gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("herald_ready", {"consumer": name})


def _age_gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("herald_batch_age_seconds", {"consumer": name})


async def _until(predicate: object, timeout: float = 30.0) -> None:
    async def wait() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), timeout)


async def test_a_stuck_batch_makes_the_consumer_not_ready_until_it_completes(
    settings: HeraldSettings,
) -> None:
    settings = settings.model_copy(
        update={"runtime": settings.runtime.model_copy(update={"stuck_batch_s": 0.5})}
    )
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.out"
    await create_topics(settings, [topics.events, target], partitions=1)
    event = default_codec().encode(build_event("comment_reply", user_id="u1", data={}))
    producer = make_producer(settings)
    await producer.start()
    handler = _Slow(target)
    runner = Runner(
        handler,
        topics=[topics.events],
        group_id=f"{settings.topic_prefix}-g",
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=settings.runtime,
    )
    task = asyncio.create_task(runner.run())
    try:
        await _until(lambda: runner.ready)  # assigned and idle: ready
        await produce_raw(settings, topics.events, [(b"u1", event)])
        await asyncio.wait_for(handler.entered.wait(), 30)
        assert runner.ready  # a batch in hand for less than stuck_batch_s is normal work
        await _until(lambda: not runner.ready, timeout=5)
        assert runner.batch_age() > 0.5
        assert _ready_gauge(handler.name) == 0.0  # read at scrape time, while still stuck
        assert (_age_gauge(handler.name) or 0.0) > 0.5  # the stuck batch's age, as it grows
        handler.release.set()
        await wait_for_records(settings, target, 1)
        await _until(lambda: runner.ready, timeout=10)  # recovered by itself
        assert _ready_gauge(handler.name) == 1.0
        assert runner.batch_age() == 0.0
        assert _age_gauge(handler.name) == 0.0
    finally:
        handler.release.set()
        runner.stop()
        await asyncio.wait_for(task, 20)
        await producer.stop()
