"""Classifier throughput with 1, 2 and 4 processes in one group on a 4-partition topic."""

from __future__ import annotations

import asyncio
import time

from bench.common import mixed_events, preload
from bench.procs import HeraldProcs, committed_total
from bench.run import Bench, Row, console
from bench.seed import ensure_users
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics

__all__ = ["phase"]

USERS = 20_000


async def _measure(b: Bench, n_procs: int, events: list[tuple[bytes, bytes]]) -> float:
    s = b.settings(partitions=4)
    topics = Topics(s.topic_prefix)
    await create_topics(s, topics.all())
    total = len(events)
    with HeraldProcs(b.stack, s) as procs:
        for i in range(n_procs):
            procs.start(f"scale{n_procs}-classifier{i}", ["classifier"])
        await procs.wait_ready()
        await asyncio.sleep(3)  # let the group settle with every member before the load arrives
        await preload(s, topics.events, events, 4)
        # Rate between 10 % and 90 % committed: excludes start-up and the tail.
        marks: dict[float, float] = {}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = await committed_total(s, "herald-classifier", topics.events)
            for frac in (0.1, 0.9):
                if frac not in marks and done >= frac * total:
                    marks[frac] = time.perf_counter()
            if 0.9 in marks:
                break
            await asyncio.sleep(0.1)
    return 0.8 * total / (marks[0.9] - marks[0.1])


async def phase(b: Bench) -> None:
    await ensure_users(b.stack.database_url, USERS)
    events = mixed_events(b.events, users=USERS, seed=99)
    rates = {}
    for n in (1, 2, 4):
        with console.status(f"classifier × {n} processes"):
            rates[n] = await _measure(b, n, events)
        b.add(
            Row(
                f"classifier, {n} process{'es' if n > 1 else ''}",
                rates[n],
                "msg/s",
                "1 process",
                rates[n] / rates[1],
                note="4 partitions, one group, separate OS processes",
            )
        )
    b.extra["scaling"] = rates
