"""Priority isolation: critical end-to-end latency with and without a bulk-lane burst, same run.

Real processes, as in production: the classifier and the priority-lane email, SMS and push
consumers (dry-run providers: Herald's own latency is measured, not a provider's), and a
bulk-lane email consumer. Critical events (security_alert → push + SMS + email) enter
herald.events at 50/s. ``HERALD_BENCH_BURST`` low-tier messages (default 1M, times ``--scale``)
are produced onto herald.channel.email.bulk before the bulk consumer starts. Phase A: no burst,
20 s. Phase B: the bulk consumer starts and drains them, and the critical stream runs until the
last one is committed, so the p99 covers the whole drain. Latency of each critical channel message = its ``sent`` outcome's
recorded_at − the event's occurred_at (event produced → provider called). The drain's rate and
the bulk consumer's CPU per message are reported too.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.channels import channel_messages
from bench.common import preload, sized, wait_drained
from bench.cost import Window
from bench.hops import hop_latencies
from bench.procs import STACK_TREES, HeraldProcs, stack_pids
from bench.run import Bench, Row, console
from consumers.emitter import Emitter
from consumers.infra.db import connect_pool, migrate
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, DeliveryOutcome, Lane, OutcomeStatus, Tier

__all__ = ["phase"]

PROCESSES = [
    ("classifier", ["classifier"]),
    ("email-priority", ["channel", "--channel", "email", "--lane", "priority"]),
    ("sms-priority", ["channel", "--channel", "sms", "--lane", "priority"]),
    ("push-priority", ["channel", "--channel", "push", "--lane", "priority"]),
    ("email-bulk", ["channel", "--channel", "email", "--lane", "bulk"]),
]
RATE = 50.0  # critical events per second
BURST = 1_000_000  # bulk-lane messages in phase B (HERALD_BENCH_BURST, times the run's --scale)
GOAL = "< 100 ms"


async def _critical_stream(
    s: HeraldSettings, seconds: float, tag: str, until: asyncio.Event | None = None
) -> int:
    """Emit security_alert events at RATE/s for ``seconds`` (or, given ``until``, until it is set,
    ``seconds`` being a cap); return how many."""
    sent = 0
    async with Emitter(s.kafka_bootstrap_servers, Topics(s.topic_prefix).events) as emit:
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds and not (until and until.is_set()):
            await emit(
                "security_alert",
                user_id=f"crit{sent % 50}",
                data={"device": tag, "ip": "203.0.113.1", "location": "bench"},
            )
            sent += 1
            await asyncio.sleep(max(0.0, sent / RATE - elapsed - 0.0005))
    return sent


async def _outcomes(s: HeraldSettings, expected: int, timeout: float = 120) -> list[DeliveryOutcome]:
    """The critical ``sent`` outcomes on herald.outcomes, once ``expected`` of them are there (or at
    ``timeout``)."""
    topic = Topics(s.topic_prefix).outcomes
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    out: list[DeliveryOutcome] = []
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    o = codec.decode(r.value, DeliveryOutcome)
                    if o.tier is Tier.CRITICAL and o.status is OutcomeStatus.SENT and o.message is not None:
                        out.append(o)
    finally:
        await consumer.stop()
    return out


def _by_tag(outcomes: list[DeliveryOutcome]) -> dict[str, list[float]]:
    """End-to-end latencies (ms) by the event's device tag (phase)."""
    out: dict[str, list[float]] = {}
    for o in outcomes:
        assert o.message is not None
        tag = o.message.data().get("device", "?")
        out.setdefault(tag, []).append((o.recorded_at - o.occurred_at).total_seconds() * 1000)
    return out


async def _latencies(s: HeraldSettings, expected: int, timeout: float = 120) -> dict[str, list[float]]:
    """Critical ``sent`` outcome latencies (ms) by the event's device tag (phase), read from herald.outcomes."""
    return _by_tag(await _outcomes(s, expected, timeout))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _seed(s: HeraldSettings) -> None:
    pool = await connect_pool(s.database_url)
    try:
        await migrate(pool)
        await pool.executemany(
            "INSERT INTO herald_recipients (user_id, email, phone) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(f"crit{i}", f"crit{i}@example.com", f"+1415666{i:04d}") for i in range(50)],
        )
        await pool.executemany(
            "INSERT INTO herald_device_tokens (token, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(f"tok-crit{i}", f"crit{i}") for i in range(50)],
        )
    finally:
        await pool.close()


async def phase(b: Bench, seconds: float = 20.0) -> None:
    s = b.settings()
    topics = Topics(s.topic_prefix)
    burst = sized("HERALD_BENCH_BURST", BURST, b.scale)
    await create_topics(s, topics.all())
    await _seed(s)
    with console.status(f"encoding {burst:,} bulk-lane messages"):
        bulk = channel_messages(Channel.EMAIL, burst, lane=Lane.BULK, tier=Tier.LOW)
    bulk_topic = topics.channel(Channel.EMAIL, Lane.BULK)
    # Dry-run providers: this measures Herald's own latency, not a provider's.
    with HeraldProcs(
        b.stack, s, {"HERALD_CHANNEL__DRY_RUN": "true", "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100"}
    ) as procs:
        for name, argv in PROCESSES[:-1]:
            procs.start(f"isolation-{name}", argv)
        with console.status("waiting for every consumer to join its group"):
            await procs.wait_ready()
        # The burst waits on its topic before the bulk consumer starts: producing it from this
        # process while the critical stream runs would delay the critical events in this
        # process's own event loop (measured as latency that is not Herald's).
        with console.status(f"producing {burst:,} bulk-lane messages (no bulk consumer yet)"):
            t_produce = time.monotonic()
            await preload(s, bulk_topic, bulk)
            produced_s = time.monotonic() - t_produce
            del bulk
        warmup = await _critical_stream(s, 3, "warmup")
        window_a = Window(
            {**{n: p.pid for n, (p, _) in procs.procs.items()}, **stack_pids(b.stack)}, STACK_TREES
        )
        with console.status(f"phase A: critical at {RATE:.0f}/s, no burst"):
            window_a.start()
            quiet = await _critical_stream(s, seconds, "quiet")
            window_a.stop()
        name, argv = PROCESSES[-1]
        procs.start(f"isolation-{name}", argv)
        await procs.wait_ready()
        window = Window(
            {**{n: p.pid for n, (p, _) in procs.procs.items()}, **stack_pids(b.stack)}, STACK_TREES
        )
        drained = asyncio.Event()
        timeout = b.timeout(burst, floor=900)
        with console.status(f"phase B: critical at {RATE:.0f}/s until {burst:,} bulk messages are drained"):
            window.start()
            t0 = time.monotonic()
            loud = 0
            stream = asyncio.create_task(_critical_stream(s, timeout, "burst", until=drained))
            try:
                # Checked once a second, not every 50 ms: the checks loaded the broker the critical
                # path crosses (a drain lasts minutes; a second of precision is plenty).
                drained_at = await wait_drained(
                    s, "herald-channel-email-bulk", bulk_topic, burst, timeout=timeout, interval=1.0
                )
            finally:
                drained.set()
                with contextlib.suppress(Exception):
                    loud = await stream
            window.stop()
            drain_s = drained_at - t0
        expected = 3 * (warmup + quiet + loud)
        with console.status(f"collecting {expected:,} critical outcomes among {burst:,} bulk ones"):
            outcomes = await _outcomes(s, expected, timeout=b.timeout(burst + expected, floor=300))
        with console.status("reading the critical events' and messages' record timestamps"):
            hops = await hop_latencies(s, outcomes)
    lat = _by_tag(outcomes)
    results: dict[str, Any] = {"burst": burst, "produced_s": produced_s, "drain_s": drain_s}
    label_b = f"while {burst:,} bulk messages drain"
    for tag, label in (("quiet", "no burst"), ("burst", label_b)):
        values = lat.get(tag, [])
        if not values:
            b.add(Row(f"critical e2e latency p99, {label}", float("nan"), "ms", note="no outcomes collected"))
            continue
        p50, p99, mx = statistics.median(values), _pct(values, 0.99), max(values)
        split = {h: _pct(v, 0.99) for h, v in hops.get(tag, {}).items() if v}
        results[tag] = {"n": len(values), "p50_ms": p50, "p99_ms": p99, "max_ms": mx, "hop_p99_ms": split}
        b.add(
            Row(
                f"critical e2e latency p99, {label}",
                p99,
                "ms",
                goal=GOAL,
                note=f"p50 {p50:.0f} ms, max {mx:.0f} ms, n={len(values)} critical messages"
                + (f" over {drain_s:.0f} s" if tag == "burst" else "")
                + "; p99 by hop: "
                + ", ".join(f"{h} {ms:.0f} ms" for h, ms in split.items()),
            )
        )
    handled = {f"isolation-{n}": burst if n == "email-bulk" else loud for n, _ in PROCESSES}
    costs = window.costs(handled)
    results["processes"] = [c.as_dict() for c in costs]
    results["processes_no_burst"] = [c.as_dict() for c in window_a.costs(quiet)]
    # CPU contention, hop by hop: ms each process waited for a CPU per critical event handled.
    results["runq_wait_ms_per_event"] = {
        label: {n.removeprefix("isolation-"): 1000 * w / max(1, count) for n, w in win.runq_waits().items()}
        for label, win, count in (("no_burst", window_a, quiet), ("burst", window, loud))
    }
    console.print(f"run-queue wait, ms per critical event: {results['runq_wait_ms_per_event']}")
    for label, shown in (("without the burst", window_a.costs(quiet)), ("while the burst drained", costs)):
        console.print(
            f"CPU utilisation {label}: "
            + ", ".join(f"{c.process.removeprefix('isolation-')}={c.utilisation:.2f}" for c in shown)
        )
    b.add(
        Row(
            "bulk burst drain",
            burst / drain_s,
            "msg/s",
            note=f"{burst:,} bulk-lane email messages (dry-run, produced beforehand in {produced_s:.0f} s) "
            f"drained in {drain_s:.0f} s by one consumer; critical events meanwhile: {loud:,} "
            f"({loud / drain_s:.0f}/s of {RATE:.0f}/s asked)",
        ),
        [c for c in costs if c.process == "isolation-email-bulk"],
    )
    b.extra["isolation"] = results
