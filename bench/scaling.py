"""Classifier throughput with 1, 2 and 4 processes in one group on a 4-partition topic: as
separate OS processes (:func:`phase`), and as one ``herald run classifier --workers N``
supervisor (:func:`phase_workers`).

Every run starts from the same state (:func:`bench.seed.fresh_state`: tables emptied, Redis
flushed, the users seeded again) on the same events, so the rows differ only by their processes.
Each process's CPU (``/proc/<pid>/stat``) is read at the 10 % and 90 % marks with the rate, so
the figures are CPU µs per event for the group and each process's utilisation (CPU s / wall s).
"""

from __future__ import annotations

import asyncio
import time

from bench.common import mixed_events, preload
from bench.cost import Cost, Window
from bench.procs import CommitWatch, HeraldProcs
from bench.run import Bench, Row, console
from bench.seed import fresh_state
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics

__all__ = ["phase", "phase_workers"]

USERS = 20_000


def _children(pid: int) -> list[int]:
    """The worker processes a supervisor started (Linux)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


async def _measure(
    b: Bench, n_procs: int, events: list[tuple[bytes, bytes]], *, workers: bool = False
) -> tuple[float, list[Cost]]:
    s = b.settings(partitions=4)
    topics = Topics(s.topic_prefix)
    await create_topics(s, topics.all())
    # Every run from the same state: the same events after an earlier run would find the rate
    # limits spent and the deferred sends armed (cheaper paths, not more processes).
    await fresh_state(b.stack.database_url, b.stack.redis_url, USERS)
    total = len(events)
    with HeraldProcs(b.stack, s) as procs:
        pids: dict[str, int | None] = {}
        if workers:
            sup = procs.start(f"workers{n_procs}", ["classifier", "--workers", str(n_procs)]).pid
            # The supervisor is ready when every worker is: several start-ups' worth.
            await procs.wait_ready(max(600.0, 10 * n_procs * HeraldProcs.slowest_start_s))
            pids["supervisor"] = sup
            pids.update({f"worker{i}": pid for i, pid in enumerate(_children(sup))})
        else:
            for i in range(n_procs):
                pids[f"classifier{i}"] = procs.start(f"scale{n_procs}-classifier{i}", ["classifier"]).pid
            await procs.wait_ready()  # every member holds partitions at once: the group has settled
        await preload(s, topics.events, events, 4)
        # Rate and CPU between 10 % and 90 % committed: excludes start-up and the tail. The
        # window's events are the commits counted at its two ends, not 80 % of the total: at tens
        # of thousands of events a second each check lags behind by a share of the window.
        window = Window(pids)
        async with CommitWatch(s, "herald-classifier", topics.events) as watch:
            deadline = time.monotonic() + b.timeout(total)
            first = 0
            while time.monotonic() < deadline:
                done = await watch.committed()
                if not first and done >= 0.1 * total:
                    window.start()
                    first = done
                if first and done >= 0.9 * total:
                    window.stop()
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"{n_procs} classifier(s) did not reach 90 % of {total:,} events in time")
    handled = done - first
    return handled / window.wall_s, window.costs(handled)


async def _scale(b: Bench, *, workers: bool) -> None:
    events = mixed_events(b.events, users=USERS, seed=99)
    rates = {}
    for n in (1, 2, 4):
        label = f"classifier --workers {n}" if workers else f"classifier, {n} process{'es' if n > 1 else ''}"
        with console.status(label):
            rates[n], costs = await _measure(b, n, events, workers=workers)
        utils = ", ".join(f"{c.process}={c.utilisation:.2f}" for c in costs)
        how = "one supervisor" if workers else "one group, separate OS processes"
        base = "--workers 1" if workers else "1 process"
        note = f"4 partitions, {how}; CPU utilisation: {utils}"
        b.add(Row(label, rates[n], "msg/s", base, rates[n] / rates[1], note=note), costs)
    b.extra["workers" if workers else "scaling"] = rates


async def phase(b: Bench) -> None:
    """1, 2 and 4 classifier processes, each its own OS process."""
    await _scale(b, workers=False)


async def phase_workers(b: Bench) -> None:
    """The same load through one supervisor with 1, 2 and 4 workers (``--workers N``)."""
    await _scale(b, workers=True)
