"""Faults beyond SIGKILL and outages, shared by the broker, scaling, slowness and soak runs.

* :func:`broker_restart`: stop the broker (SIGKILL or SIGTERM) and start it on the same port
  with the same durable log; measures seconds from "broker back" to the first delivery of an
  event emitted after that moment (the whole pipeline is moving again, not just one hop).
* :func:`readiness`: every Herald process's ``/readyz`` answer.
* :func:`rss_mb`: resident memory of a process, from ``/proc``.
* :func:`group_lag`: per consumer group of the pipeline, records past its committed offsets
  (read from the committed offset, not only inferred from the broker's end offsets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.models import OutcomeStatus
from tests.chaos.driver import ChaosRun
from tests.chaos.ledger import Ledger
from tests.chaos.pipeline import PROCESSES, Pipeline
from tests.chaos.population import TIER

__all__ = [
    "BrokerRestart",
    "broker_restart",
    "critical_latencies",
    "first_delivery_after",
    "group_lag",
    "group_of",
    "lag_of",
    "lane_latencies",
    "p99",
    "readiness",
    "rss_mb",
]


@dataclass
class BrokerRestart:
    sig: str
    down_s: float  # stop + start until the port accepts connections again
    back_at: float  # time.monotonic() when the broker was back
    first_delivery_s: float | None = None  # back -> first delivery of an event emitted after back
    notes: list[str] = field(default_factory=list)


def _first_webhook_after(run: ChaosRun, since: float) -> float | None:
    """Earliest accepted webhook delivery of an event emitted at or after ``since``."""
    best: float | None = None
    for d in list(run.pipeline.receiver.deliveries):
        if not d.accepted or d.at < since:
            continue
        with contextlib.suppress(ValueError):
            event_id = json.loads(d.body).get("event_id")
            emitted = run.emitted.get(event_id)
            if emitted is not None and emitted >= since and (best is None or d.at < best):
                best = d.at
    return best


async def first_delivery_after(run: ChaosRun, since: float, timeout_s: float = 120.0) -> float | None:
    """Seconds from ``since`` to the first provider-accepted delivery of an event emitted after it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at = _first_webhook_after(run, since)
        if at is not None:
            return at - since
        await asyncio.sleep(0.1)
    return None


async def broker_restart(run: ChaosRun, sig: signal.Signals, pause_s: float = 0.0) -> BrokerRestart:
    """Restart the broker during the stream; ``pause_s`` keeps it down a little longer."""
    stack = run.pipeline.stack
    run.say(f"broker {sig.name}")
    t0 = time.monotonic()
    await asyncio.to_thread(stack.stop_service, "kafka", sig)
    await asyncio.sleep(pause_s)
    await asyncio.to_thread(stack.start_service, "kafka")
    back = time.monotonic()
    result = BrokerRestart(sig.name, back - t0, back)
    run.outages.append(("kafka", t0, back))
    run.say(f"broker back after {back - t0:.1f}s")
    result.first_delivery_s = await first_delivery_after(run, back)
    run.say(f"first delivery {result.first_delivery_s}s after the broker came back")
    return result


async def readiness(pipeline: Pipeline) -> dict[str, int]:
    """name -> HTTP status of ``/readyz`` (0: no answer)."""
    out: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=2) as client:
        for name, port in pipeline.ports.items():
            try:
                out[name] = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
            except httpx.HTTPError:
                out[name] = 0
    return out


def rss_mb(pid: int) -> float:
    """Resident set size in MiB (0.0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def critical_latencies(run: ChaosRun, ledger: Ledger, start: float, end: float) -> list[float]:
    """Seconds from emit to the first SENT outcome, per (critical event, channel), emitted in the window."""
    return lane_latencies(run, ledger, start, end, tiers={"critical"})


def lane_latencies(
    run: ChaosRun,
    ledger: Ledger,
    start: float,
    end: float,
    *,
    tiers: set[str],
    channel: str | None = None,
) -> list[float]:
    """Seconds from emit to the first SENT outcome, per (event, channel), for events of ``tiers``
    emitted in the window; only outcomes on ``channel`` when one is named."""
    wall_minus_mono = time.time() - time.monotonic()
    wanted = {e.event_id for e in run.events if TIER[e.event_type] in tiers}
    first: dict[tuple[str, str], float] = {}
    for event_id in wanted:
        sent_at = run.emitted.get(event_id)
        if sent_at is None or not start <= sent_at <= end:
            continue
        for o in ledger.by_event.get(event_id, []):
            if o.status is not OutcomeStatus.SENT or (channel is not None and str(o.channel) != channel):
                continue
            at = o.recorded_at.replace(tzinfo=o.recorded_at.tzinfo or UTC).timestamp() - wall_minus_mono
            key = (event_id, str(o.channel))
            first[key] = min(first.get(key, at), at)
    return sorted(at - run.emitted[e] for (e, _), at in first.items())


def p99(xs: list[float]) -> float:
    return xs[int(0.99 * (len(xs) - 1))] if xs else float("nan")


def group_of(pipeline: Pipeline, argv: list[str]) -> tuple[str, list[str]]:
    """The consumer group of a pipeline process and the topics it reads."""
    t = pipeline.topics
    if argv[0] == "classifier":
        return "herald-classifier", [t.events]
    if argv[0] == "fallback":
        return "herald-fallback", [t.outcomes, t.receipts]
    channel, lane = argv[argv.index("--channel") + 1], argv[argv.index("--lane") + 1]
    return f"herald-channel-{channel}-{lane}", [t.channel(channel, lane)]


def lag_of(committed: int, broker_end: int, *known_ends: int) -> int:
    """Records past ``committed``: the end is the highest of the broker's end offset and every end
    seen otherwise (tansu on S3 reports end offsets too low: 12 records have read as an end of 1)."""
    return max(0, max(broker_end, *known_ends) - committed)


async def _read_past(
    probe: AIOKafkaConsumer, tps: list[TopicPartition], idle_fetches: int = 2
) -> dict[TopicPartition, int]:
    """Partition -> one past the last offset found at or after the probe's position (the committed
    offset): records a group has not committed are read, not inferred from an end offset."""
    seen: dict[TopicPartition, int] = {}
    idle = 0
    while idle < idle_fetches:
        batch = await probe.getmany(*tps, timeout_ms=1000, max_records=5000)
        idle = 0 if batch else idle + 1
        for tp, records in batch.items():
            if records:
                seen[tp] = max(seen.get(tp, 0), records[-1].offset + 1)
    return seen


async def group_lag(
    pipeline: Pipeline, timeout_s: float = 60.0, known_ends: Mapping[TopicPartition, int] | None = None
) -> dict[str, int]:
    """Group -> records not yet committed, over the partitions of the topics it reads that it has
    committed on. The end of a partition is the highest of: the broker's end offset, ``known_ends``
    (what a reader such as the ledger has read up to), and what a fetch from the committed offset
    returns, so a wrong end offset cannot hide records a group has not committed. Asked as a
    member-less consumer of each group (tansu answers the admin client's OffsetFetch in a form
    aiokafka cannot decode). Bounded: raises ``TimeoutError`` after ``timeout_s``."""
    out: dict[str, int] = {}
    known = known_ends or {}
    async with asyncio.timeout(timeout_s):
        for group, topics in sorted(dict(group_of(pipeline, argv) for argv in PROCESSES.values()).items()):
            probe = AIOKafkaConsumer(
                bootstrap_servers=pipeline.stack.kafka, group_id=group, enable_auto_commit=False
            )
            await probe.start()
            try:
                await probe._client.force_metadata_update()
                tps = [
                    TopicPartition(t, p) for t in topics for p in sorted(probe.partitions_for_topic(t) or ())
                ]
                ends = await probe.end_offsets(tps)
                committed = {tp: c for tp in tps if (c := await probe.committed(tp)) is not None and c >= 0}
                probe.assign(list(committed))
                for tp, c in committed.items():
                    probe.seek(tp, c)
                read = await _read_past(probe, list(committed)) if committed else {}
                out[group] = sum(
                    lag_of(c, ends[tp], known.get(tp, 0), read.get(tp, 0)) for tp, c in committed.items()
                )
            finally:
                await probe.stop()
    return out


def unbounded_channels(run: ChaosRun, pipeline: Pipeline) -> set[str]:
    """Channels whose process was killed around the Redis outage: from 10 s before it (the restarted
    process replays once it has joined its group, which takes seconds, so possibly inside the
    outage) to 15 s after it (a batch sent without the ledger may still be uncommitted), or whose
    in-flight calls could not be counted because Redis was down."""
    windows = [(down - 10.0, back + 15.0) for svc, down, back in run.outages if svc == "redis"]
    out = set(pipeline.in_flight_unknown)
    for t, name in pipeline.kills:
        argv = PROCESSES[name]
        if argv[0] == "channel" and any(lo <= t <= hi for lo, hi in windows):
            out.add(argv[argv.index("--channel") + 1])
    return out
