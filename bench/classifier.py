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

__all__ = ["USERS", "phase", "run_classifier"]

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


async def phase(b: Bench) -> None:
    s = b.settings()
    with console.status(f"seeding {USERS:,} users on an empty database and Redis"):
        await fresh_state(b.stack.database_url, b.stack.redis_url, USERS)
    res = Resources(s)
    try:
        pool = await res.pool()
        with console.status(f"preloading {b.events:,} events"):
            await preload(s, res.topics.events, mixed_events(b.events, users=USERS), 4)
        with console.status("classifier"), process_gc():  # as `herald run classifier` sets it
            t = await run_classifier(res, b.events, f"{s.topic_prefix}-classifier", b.timeout(b.events))
        deferred = await pool.fetchval("SELECT count(*) FROM herald_timers")
    finally:
        await res.close()
    b.add_timing(
        Row(
            "classifier",
            t.rate,
            "msg/s",
            "raw",
            t.rate / b.raw_rate if b.raw_rate else None,
            "≤ 25 µs CPU/event",
            f"{USERS:,} users, {deferred:,} deferred sends armed",
        ),
        t,
        "classifier",
    )
    b.extra["classifier_seconds"] = t.seconds
    b.extra["classifier_timeline_ms_per_batch"] = {"batches": t.batches, **t.timeline}
    console.print(
        f"classifier, one batch ({t.records / max(1, t.batches):.0f} events on average, {t.batches:,} batches): "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in t.timeline.items())
    )
