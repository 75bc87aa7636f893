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
) -> tuple[float, list[Cost], bool]:
    s = b.settings(partitions=4)
    topics = Topics(s.topic_prefix)
    await create_topics(s, topics.all())
    # Every run from the same state: the same events after an earlier run would find the rate
    # limits spent and the deferred sends armed (cheaper paths, not more processes).
    await fresh_state(b.stack.database_url, b.stack.redis_url, USERS)
    total = len(events)
    # A group of its own per run: the embedded broker can hand a member joining a group that
    # other members just left an empty assignment (its build does not check that an assignment
    # covers every member), and this run must not measure that.
    group = f"herald-classifier-{'w' if workers else 'p'}{n_procs}-{time.monotonic_ns()}"
    with HeraldProcs(b.stack, s) as procs:
        pids: dict[str, int | None] = {}
        if workers:
            sup = procs.start(
                f"workers{n_procs}", ["classifier", "--workers", str(n_procs), "--group", group]
            ).pid
            # The supervisor is ready when every worker is: several start-ups' worth.
            await procs.wait_ready(max(600.0, 10 * n_procs * HeraldProcs.slowest_start_s))
            pids["supervisor"] = sup
            pids.update({f"worker{i}": pid for i, pid in enumerate(_children(sup))})
        else:
            for i in range(n_procs):
                pids[f"classifier{i}"] = procs.start(
                    f"scale{n_procs}-classifier{i}", ["classifier", "--group", group]
                ).pid
            await procs.wait_ready()  # every member holds partitions at once: the group has settled
        # Rate and CPU up to 90 % committed, from 10 % or, better, from the first check after the
        # last event was produced (the producer takes a core from the processes measured). The
        # window's events are the commits counted at its two ends, not a share of the total: at
        # tens of thousands of events a second each check lags behind by a share of the window.
        # When the group drains as fast as the bench produces (no quiet 10 % left after the
        # load), the window from 10 % is reported, and the row says the producer was running.
        during, after = Window(pids), Window(pids)
        async with CommitWatch(s, group, topics.events) as watch:
            loading = asyncio.create_task(preload(s, topics.events, events, 4))
            deadline = time.monotonic() + b.timeout(total)
            first = quiet_first = 0
            while time.monotonic() < deadline:
                done = await watch.committed()
                if not first and done >= 0.1 * total:
                    during.start()
                    first = done
                if first and not quiet_first and loading.done() and done < 0.8 * total:
                    after.start()
                    quiet_first = done
                if first and done >= 0.9 * total:
                    during.stop()
                    if quiet_first:
                        after.stop()
                    break
                await asyncio.sleep(0.05)
            else:
                loading.cancel()
                raise TimeoutError(f"{n_procs} classifier(s) did not reach 90 % of {total:,} events in time")
            await loading
    window, start_at = (after, quiet_first) if quiet_first else (during, first)
    handled = done - start_at
    if handled <= 0:  # the window opened after the work was done
        raise RuntimeError(f"{n_procs} classifier(s): the window was missed ({first:,} at the first check)")
    return handled / window.wall_s, window.costs(handled), not quiet_first


async def _scale(b: Bench, *, workers: bool) -> None:
    events = mixed_events(b.events, users=USERS, seed=99)
    rates = {}
    for n in (1, 2, 4):
        label = f"classifier --workers {n}" if workers else f"classifier, {n} process{'es' if n > 1 else ''}"
        with console.status(label):
            rates[n], costs, with_producer = await _measure(b, n, events, workers=workers)
        utils = ", ".join(f"{c.process}={c.utilisation:.2f}" for c in costs)
        how = "one supervisor" if workers else "one group, separate OS processes"
        base = "--workers 1" if workers else "1 process"
        note = f"4 partitions, {how}; CPU utilisation: {utils}"
        if with_producer:
            note += "; the group drained as fast as the bench produced: measured with the producer running"
        b.add(Row(label, rates[n], "msg/s", base, rates[n] / rates[1], note=note), costs)
    b.extra["workers" if workers else "scaling"] = rates


async def phase(b: Bench) -> None:
    """1, 2 and 4 classifier processes, each its own OS process."""
    await _scale(b, workers=False)


async def phase_workers(b: Bench) -> None:
    """The same load through one supervisor with 1, 2 and 4 workers (``--workers N``)."""
    await _scale(b, workers=True)
