"""RSS of consumer processes before and after a long run: it must stay flat."""

from __future__ import annotations

import asyncio
import os
import time

from bench.channels import channel_messages
from bench.common import mixed_events, preload
from bench.procs import HeraldProcs, committed_total, rss_mib
from bench.run import Bench, Row, console
from bench.seed import fresh_state
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from schemas.models import Channel, Lane

__all__ = ["phase"]

USERS = 20_000
CHUNK = 100_000


async def _drain(procs: HeraldProcs, group: str, topic: str, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await committed_total(procs.settings, group, topic) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} did not commit {total:,} records of {topic} in {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def phase(b: Bench) -> None:
    events_total = int(os.environ.get("HERALD_BENCH_MEMORY_EVENTS", "1000000"))
    s = b.settings(partitions=4)
    topics = Topics(s.topic_prefix)
    await create_topics(s, topics.all())
    await fresh_state(b.stack.database_url, b.stack.redis_url, USERS)
    email_topic = topics.channel(Channel.EMAIL, Lane.PRIORITY)
    with HeraldProcs(b.stack, s, {"HERALD_CHANNEL__DRY_RUN": "true"}) as procs:
        cls = procs.start("mem-classifier", ["classifier"])
        # The classifier's own output goes to many topics; the email consumer gets a stream of its own.
        eml = procs.start(
            "mem-email", ["channel", "--channel", "email", "--lane", "priority", "--group", "mem-email"]
        )
        await procs.wait_ready()
        samples: dict[str, list[tuple[int, float]]] = {"classifier": [], "email consumer": []}
        done = 0
        t0 = time.monotonic()
        while done < events_total:
            n = min(CHUNK, events_total - done)
            with console.status(f"memory: {done:,}/{events_total:,} events"):
                await preload(s, topics.events, mixed_events(n, users=USERS, seed=done), 4)
                await preload(s, email_topic, channel_messages(Channel.EMAIL, n // 5), 4)
                await _drain(procs, "herald-classifier", topics.events, done + n, b.timeout(n))
            done += n
            samples["classifier"].append((done, rss_mib(cls.pid)))
            samples["email consumer"].append((done, rss_mib(eml.pid)))
        await _drain(
            procs,
            "mem-email",
            email_topic,
            sum(min(CHUNK, events_total - i) // 5 for i in range(0, events_total, CHUNK)),
            b.timeout(CHUNK),  # what is left after the last chunk
        )
        samples["email consumer"][-1] = (done, rss_mib(eml.pid))
        elapsed = time.monotonic() - t0
    for name, points in samples.items():
        first, last = points[0][1], points[-1][1]
        b.add(
            Row(
                f"RSS {name}",
                last,
                "MiB",
                f"after {points[0][0]:,}",
                last / first,
                note=f"{first:.0f} MiB after {points[0][0]:,} events → {last:.0f} MiB after {points[-1][0]:,}",
            )
        )
    b.extra["memory"] = {k: v for k, v in samples.items()}
    b.extra["memory_seconds"] = elapsed
