"""End-to-end cost: a realistic mix of events through the whole pipeline, CPU per delivered notification.

Every process of a deployment that handles an event, each its own OS process as in production:
the classifier, a consumer per channel and lane the routes use (email priority and bulk, SMS,
push, in-app, webhook; dry-run providers, ``HERALD_CHANNEL__DRY_RUN``), the fallback consumer and
the scheduler. The run's ``--events`` mixed events (``bench.common.MIX``, 200k by default) over
20k seeded users are produced onto herald.events; the measured window runs from just before the
first event is produced until everything they cause is done: the classifier has committed every
event, no consumer group's commits have moved for 10 s, and no timer armed by the run falls due
within the next two minutes (the fallback's escalation, digest and critical-check delays
are shortened to seconds so they fire inside the window; quiet-hours deferrals due hours later
do not, and are counted as deferred).

Reported: total CPU (``/proc/<pid>/stat`` of every process over the window) per delivered
notification (one or more ``sent`` outcomes with the same notification id) and per event, and
the split by process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import mixed_events, preload
from bench.cost import Cost, Window, above_idle
from bench.procs import HeraldProcs, committed_total
from bench.run import Bench, Row, console
from bench.seed import fresh_state
from consumers.infra.db import connect_pool
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, DeliveryOutcome, Lane, OutcomeStatus

__all__ = ["phase"]

USERS = 20_000
CHANNELS: list[tuple[Channel, Lane]] = [
    (Channel.EMAIL, Lane.PRIORITY),
    (Channel.EMAIL, Lane.BULK),
    (Channel.SMS, Lane.PRIORITY),
    (Channel.PUSH, Lane.PRIORITY),
    (Channel.IN_APP, Lane.PRIORITY),
    (Channel.WEBHOOK, Lane.PRIORITY),
]
# Fallback delays in seconds, so escalations, digests and critical checks fire inside the window.
ENV = {
    "HERALD_CHANNEL__DRY_RUN": "true",
    "HERALD_FALLBACK__HIGH_ESCALATION_DELAY_S": "10",
    "HERALD_FALLBACK__DIGEST_AFTER_S": "10",
    "HERALD_FALLBACK__DIGEST_COLLECT_S": "5",
    "HERALD_FALLBACK__DIGEST_WINDOW_S": "3600",
    "HERALD_FALLBACK__CRITICAL_CHECK_AFTER_S": "60",
}
IDLE_S = 20.0  # the pipeline's idle CPU is measured this long before the events are produced
HORIZON_S = 120  # timers due later than this (quiet hours) are not waited for
QUIET_CHECKS = 5  # checks 2 s apart without a commit moving: the pipeline is idle


def _name(channel: Channel, lane: Lane) -> str:
    return f"{channel.value}-{lane.value}"


def _groups(topics: Topics) -> dict[str, tuple[str, list[str]]]:
    """process name -> (consumer group, topics it consumes)."""
    groups = {"classifier": ("herald-classifier", [topics.events])}
    for channel, lane in CHANNELS:
        groups[_name(channel, lane)] = (
            f"herald-channel-{channel.value}-{lane.value}",
            [topics.channel(channel, lane)],
        )
    groups["fallback"] = ("herald-fallback", [topics.outcomes, topics.receipts])
    return groups


async def _timers_due(pool: asyncpg.Pool, namespace: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM herald_timers WHERE namespace = $1 AND state = 'pending' "
        "AND due_at < now() + make_interval(secs => $2)",
        namespace,
        float(HORIZON_S),
    )
    return n


async def _committed(s: HeraldSettings, groups: dict[str, tuple[str, list[str]]]) -> dict[str, int]:
    return {name: sum([await committed_total(s, g, t) for t in ts]) for name, (g, ts) in groups.items()}


async def _settled(
    s: HeraldSettings, pool: asyncpg.Pool, events: int, timeout: float
) -> tuple[float, dict[str, int]]:
    """Wait until the pipeline is idle: the classifier has committed every event, no group's
    committed offsets moved for ``QUIET_CHECKS`` checks 2 s apart, and no timer is due within
    HORIZON_S. Return the monotonic time of the last movement and the records each process
    consumed. (Committed offsets, not end offsets: the embedded broker's ListOffsets answers are
    not high watermarks.)"""
    groups = _groups(Topics(s.topic_prefix))
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    moved_at = time.monotonic()
    quiet = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(2)
        done = await _committed(s, groups)
        if done != last:
            last, moved_at, quiet = done, time.monotonic(), 0
            continue
        if done["classifier"] >= events and not await _timers_due(pool, s.topic_prefix):
            quiet += 1
            if quiet >= QUIET_CHECKS:
                return moved_at, done
        else:
            quiet = 0
    raise TimeoutError(f"the pipeline did not settle within {timeout:.0f}s")


async def _outcomes(s: HeraldSettings) -> dict[str, Any]:
    """Counts of the run's outcomes: by status, sent by channel, distinct notifications sent."""
    topic = Topics(s.topic_prefix).outcomes
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    statuses: Counter[str] = Counter()
    sent_by_channel: Counter[str] = Counter()
    notifications: set[str] = set()
    seen = 0
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        empty = 0
        while empty < 3:  # read to the end: three empty polls in a row
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            empty = 0 if batch else empty + 1
            for records in batch.values():
                for r in records:
                    seen += 1
                    o = codec.decode(r.value, DeliveryOutcome)
                    statuses[o.status.value] += 1
                    if o.status is OutcomeStatus.SENT:
                        sent_by_channel[o.channel.value if o.channel else "?"] += 1
                        notifications.add(o.notification_id)
    finally:
        await consumer.stop()
    return {
        "outcomes": seen,
        "by_status": dict(statuses),
        "sent_by_channel": dict(sent_by_channel),
        "notifications_sent": len(notifications),
        "messages_sent": sum(sent_by_channel.values()),
    }


async def phase(b: Bench) -> None:
    n = b.events
    s = b.settings(partitions=4)
    topics = Topics(s.topic_prefix)
    await create_topics(s, topics.all())
    await fresh_state(b.stack.database_url, b.stack.redis_url, USERS)
    with console.status(f"encoding {n:,} mixed events"):
        events = mixed_events(n, users=USERS, seed=23)
    pool = await connect_pool(s.database_url)
    try:
        with HeraldProcs(b.stack, s, ENV) as procs:
            pids: dict[str, int | None] = {"classifier": procs.start("e2e-classifier", ["classifier"]).pid}
            for channel, lane in CHANNELS:
                argv = ["channel", "--channel", channel.value, "--lane", lane.value]
                pids[_name(channel, lane)] = procs.start(f"e2e-{_name(channel, lane)}", argv).pid
            pids["fallback"] = procs.start("e2e-fallback", ["fallback"]).pid
            pids["scheduler"] = procs.start("e2e-scheduler", ["scheduler"]).pid
            with console.status("waiting for every process to be ready"):
                await procs.wait_ready()  # all ready at once: every group has settled
            with console.status(f"idle floor: {IDLE_S:.0f} s with nothing to read"):
                idle = Window(pids)
                idle.start()
                await asyncio.sleep(IDLE_S)
                idle.stop()
            window = Window(pids)
            window.start()
            t0 = time.monotonic()
            with console.status(f"{n:,} events through the pipeline"):
                await preload(s, topics.events, events, 4)
                del events
                idle_at, handled = await _settled(s, pool, n, b.timeout(n, floor=900))
            window.stop()
            wall_s = idle_at - t0
        deferred = await pool.fetchval(
            "SELECT count(*) FROM herald_timers WHERE namespace = $1 AND state = 'pending'", s.topic_prefix
        )
    finally:
        await pool.close()
    with console.status("counting outcomes"):
        out = await _outcomes(s)
    handled = {**handled, "scheduler": n}  # a poller, not a consumer: its CPU is charged to the events
    costs = window.costs(handled)
    total_cpu = sum(c.cpu_s for c in costs)
    delivered = out["notifications_sent"]
    split = ", ".join(
        f"{c.process} {c.cpu_s / total_cpu:.0%}" for c in sorted(costs, key=lambda c: -c.cpu_s) if total_cpu
    )
    b.add(
        Row(
            "end to end, CPU per delivered notification",
            total_cpu / delivered * 1e3 if delivered else float("nan"),
            "ms",
            note=f"{n:,} mixed events → {delivered:,} notifications, {out['messages_sent']:,} messages sent "
            f"(dry-run) in {wall_s:.0f} s, {len(costs)} processes; CPU split: {split}",
        ),
    )
    b.add(
        Row("end to end, CPU per event", total_cpu / n * 1e3, "ms", note=f"{n / wall_s:,.0f} events/s"),
        [Cost(c.process, n, c.cpu_s, c.wall_s) for c in costs],
    )
    # Every process polls even with nothing to read (a fetch per fetch_max_wait_ms): a slow run
    # is charged that floor for longer. Above it is what the events themselves cost.
    idle_costs = idle.costs(0)
    above_s = above_idle(costs, idle_costs)
    idle_ms_s = sum(c.cpu_s for c in idle_costs) / idle.wall_s * 1e3
    above = sum(above_s.values())
    b.add(
        Row(
            "end to end, CPU per delivered notification above idle",
            above / delivered * 1e3 if delivered else float("nan"),
            "ms",
            note=f"the {len(costs)} processes idle cost {idle_ms_s:.0f} ms CPU/s together, "
            f"{idle_ms_s * (window.wall_s) / 1e3 / total_cpu:.0%} of the run's CPU",
        ),
    )
    b.extra["e2e_cost"] = {
        "events": n,
        "wall_s": wall_s,
        "cpu_s": total_cpu,
        "deferred_timers": deferred,
        **out,
        "processes": [c.as_dict() for c in costs],
        "idle_ms_cpu_per_s": {c.process: round(c.cpu_s / idle.wall_s * 1e3, 2) for c in idle_costs},
        "cpu_s_above_idle": {k: round(v, 3) for k, v in above_s.items()},
    }
