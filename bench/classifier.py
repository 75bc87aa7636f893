"""Classifier msgs/s on mixed events with realistic preferences (PostgreSQL) and rate limits (Redis)."""

from __future__ import annotations

from bench.common import Timing, mixed_events, preload, process_gc
from bench.run import Bench, Row, console
from bench.seed import fresh_state
from bench.timed import time_runner
from consumers.classifier.process import build_classifier
from consumers.infra.resources import Resources
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import dlq

__all__ = ["RUNS", "USERS", "median_run", "phase", "run_classifier"]

USERS = 20_000


async def run_classifier(res: Resources, total: int, group: str, timeout: float) -> Timing:
    topics = res.topics
    await create_topics(res.settings, [dlq(topics.events), topics.outcomes, *topics.channel_topics()])
    handler = await build_classifier(res)
    return await time_runner(
        handler,
        topic=topics.events,
        group=group,
        total=total,
        producer=await res.producer(),
        settings=res.settings,
        timeout=timeout,
    )


RUNS = 3
"""Measured runs of the classifier, each from the same fresh state: on a shared virtual machine the
same code's CPU per event moves by a third between runs back to back, so one run says little."""


def median_run(timings: list[Timing]) -> Timing:
    """The run whose CPU per event is the median of ``timings`` (the lower middle for an even count)."""
    ranked = sorted(timings, key=lambda t: (t.cpu_s or 0.0) / max(1, t.records))
    return ranked[(len(ranked) - 1) // 2]


def _us(t: Timing) -> float:
    return (t.cpu_s or 0.0) / max(1, t.records) * 1e6


async def phase(b: Bench) -> None:
    s = b.settings()
    timings: list[Timing] = []
    deferred: list[int] = []
    res = Resources(s)
    try:
        pool = await res.pool()
        with console.status(f"preloading {b.events:,} events"):
            await preload(s, res.topics.events, mixed_events(b.events, users=USERS), 4)
        for run in range(RUNS):
            with console.status(f"seeding {USERS:,} users on an empty database and Redis"):
                await fresh_state(b.stack.database_url, b.stack.redis_url, USERS)
            # A group of its own per run: each reads the same events from the start.
            group = f"{s.topic_prefix}-classifier-{run}"
            with (
                console.status(f"classifier, run {run + 1} of {RUNS}"),
                process_gc(),
            ):  # as `herald run` sets it
                timings.append(await run_classifier(res, b.events, group, b.timeout(b.events)))
            deferred.append(await pool.fetchval("SELECT count(*) FROM herald_timers"))
    finally:
        await res.close()
    t = median_run(timings)
    runs = ", ".join(f"{_us(x):.1f}" for x in timings)
    b.add_timing(
        Row(
            "classifier",
            t.rate,
            "msg/s",
            "raw",
            t.rate / b.raw_rate if b.raw_rate else None,
            "≤ 25 µs CPU/event",
            f"median of {RUNS} runs (µs CPU/event: {runs}); {USERS:,} users, "
            f"{deferred[timings.index(t)]:,} deferred sends armed",
        ),
        t,
        "classifier",
    )
    b.extra["classifier_seconds"] = t.seconds
    b.extra["classifier_runs_cpu_us"] = [_us(x) for x in timings]
    b.extra["classifier_timeline_ms_per_batch"] = {"batches": t.batches, **t.timeline}
    console.print(
        f"classifier, one batch of the median run ({t.records / max(1, t.batches):.0f} events on average, "
        f"{t.batches:,} batches): " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in t.timeline.items())
    )
