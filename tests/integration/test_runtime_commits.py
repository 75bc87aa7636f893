"""Coalesced offset commits against the real broker: offsets acknowledged within
``commit_interval_ms`` of the last commit wait for the next one, and are committed anyway when the
consumer goes idle, at shutdown and when its partitions are revoked (so nothing is replayed)."""

from __future__ import annotations

import asyncio

import pytest

from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.runner import Runner
from tests.kafka_helpers import Forward, committed_offsets, produce_raw
from tests.waiting import until

pytestmark = pytest.mark.timeout(180)


def _records(prefix: str, n: int) -> list[tuple[bytes | None, bytes]]:
    return [(f"{prefix}{i}".encode(), f"{prefix}{i}".encode()) for i in range(n)]


class _Group:
    """Runners of one group over ``source`` (forwarding to ``<prefix>.out``) and its commits."""

    def __init__(self, settings: HeraldSettings, interval_ms: int, partitions: int = 1) -> None:
        self.settings = settings.model_copy(
            update={"runtime": settings.runtime.model_copy(update={"commit_interval_ms": interval_ms})}
        )
        self.source = f"{settings.topic_prefix}.in"
        self.target = f"{settings.topic_prefix}.out"
        self.group = f"{settings.topic_prefix}-commits"
        self.partitions = partitions
        self.producer = make_producer(settings)
        self.tasks: list[asyncio.Task[None]] = []
        self.runners: list[Runner[bytes]] = []

    async def __aenter__(self) -> _Group:
        await create_topics(self.settings, [self.source, self.target], partitions=self.partitions)
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for r in self.runners:
            r.stop()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 30)
        await self.producer.stop()

    def start(self, handler: Forward) -> Runner[bytes]:
        runner: Runner[bytes] = Runner(
            handler,
            topics=[self.source],
            group_id=self.group,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            producer=self.producer,
            settings=self.settings.runtime,
        )
        self.runners.append(runner)
        self.tasks.append(asyncio.create_task(runner.run()))
        return runner

    async def committed(self) -> int:
        return sum((await committed_offsets(self.settings, self.group, self.source)).values())

    async def first_commit_then_pending(self, handler: Forward, runner: Runner[bytes]) -> None:
        """10 records handled and committed (the first commit is due at once), then 10 more handled
        and acknowledged within the interval: their offsets are left pending."""
        await produce_raw(self.settings, self.source, _records("a", 10))

        async def first_committed() -> bool:
            return len(handler.handled) >= 10 and await self.committed() > 0

        await until(first_committed, what="the first batch is committed at once", timeout=30)
        before = await self.committed()
        await produce_raw(self.settings, self.source, _records("b", 10))

        async def settled() -> bool:
            return len(handler.handled) >= 20 and runner.describe()["in_flight"] == "none"

        await until(settled, what="the second batch is handled and acknowledged", timeout=30)
        assert await self.committed() == before < 20  # coalesced: waits for the interval or a flush
        assert list(runner._inflight.pending.values()) == [20]  # one partition, acknowledged up to 20


async def test_pending_offsets_are_committed_once_the_consumer_is_idle(settings: HeraldSettings) -> None:
    async with _Group(settings, interval_ms=8_000) as g:
        handler = Forward("commits-idle", g.target)
        runner = g.start(handler)
        await g.first_commit_then_pending(handler, runner)

        async def all_committed() -> bool:
            return await g.committed() == 20

        await until(
            all_committed, what="an idle poll past the interval commits the pending offsets", timeout=30
        )
        assert runner._inflight.pending == {}


async def test_pending_offsets_are_committed_at_shutdown(settings: HeraldSettings) -> None:
    async with _Group(settings, interval_ms=600_000) as g:
        handler = Forward("commits-stop", g.target)
        runner = g.start(handler)
        await g.first_commit_then_pending(handler, runner)
        runner.stop()
        await asyncio.wait_for(g.tasks[0], 30)
        assert await g.committed() == 20


async def test_pending_offsets_are_committed_on_revocation_so_nothing_is_replayed(
    settings: HeraldSettings,
) -> None:
    async with _Group(settings, interval_ms=600_000) as g:
        first = Forward("commits-revoked", g.target)
        runner = g.start(first)
        await g.first_commit_then_pending(first, runner)
        second = Forward("commits-joiner", g.target)
        g.start(second)  # one partition: the group revokes it from the first member

        async def rebalanced() -> bool:
            return runner.describe()["revocations"] != 0 and await g.committed() == 20

        await until(rebalanced, what="the revocation commits the pending offsets", timeout=60)
        # One record more: whoever owns the partition now reads it only after anything it replays
        # (one partition, in order), so once it is handled the replay, if any, is in.
        await produce_raw(g.settings, g.source, _records("c", 1))

        async def marker_read() -> bool:
            return b"c0" in first.handled + second.handled

        await until(marker_read, what="the partition's owner reads on from the commit", timeout=60)
        assert len(first.handled) + len(second.handled) == 21  # nothing replayed
