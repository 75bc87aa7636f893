"""Durable timers: release rate with 100k armed, and lateness (due time → produced record) p99.

Two runs on the real stack (PostgreSQL timers table, Kafka topic):

* **backlog**: 100k ``publish`` timers all due; pollers (1 and 2 side by side) drain them.
  Figure: timers fired per second.
* **steady**: 100k timers due over the next ``--spread`` seconds while the default poller
  (``poll_interval_s`` from settings) runs. Lateness of each timer = the produced record's
  Kafka timestamp (set when the poller sends it) minus the due time carried in its payload.
  Figures: p50 / p99 / max lateness.

``python -m bench.timers`` runs it alone on a fresh embedded stack; ``phase`` plugs into
``bench/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import time
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import stack_settings
from bench.run import Row, console
from consumers.devstack import DevStack
from consumers.infra.clock import SystemClock
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings, SchedulerSettings
from consumers.runtime.kafka import create_topics
from consumers.scheduler.store import Scheduler, TimerPoller, publish_timer

__all__ = ["backlog", "main", "phase", "steady"]

TIMERS = 100_000
_CHUNK = 10_000


async def _arm(scheduler: Scheduler, run: str, topic: str, dues: list[datetime]) -> None:
    for start in range(0, len(dues), _CHUNK):
        chunk = dues[start : start + _CHUNK]
        timers = [
            publish_timer(
                f"bench:{run}:{start + i}", due, topic, None, struct.pack(">q", int(due.timestamp() * 1000))
            )
            for i, due in enumerate(chunk)
        ]
        await scheduler.arm(timers)


async def _count_pending(scheduler: Scheduler, run: str) -> int:
    value = await scheduler.pool.fetchval(
        "SELECT count(*) FROM herald_timers WHERE state = 'pending' AND key LIKE $1", f"bench:{run}%:%"
    )
    return int(value)


async def backlog(settings: HeraldSettings, pollers: int, n: int = TIMERS) -> dict[str, float]:
    """n timers all due; ``pollers`` pollers drain them. Returns fired/s."""
    res = Resources(settings)
    run = f"backlog{pollers}-{time.time_ns()}"
    topic = f"{settings.topic_prefix}.bench.timers.{run}"
    try:
        await create_topics(settings, [topic])
        pool = await res.pool()
        producer = await res.producer()
        scheduler = Scheduler(pool, SystemClock(), namespace=settings.topic_prefix)
        past = SystemClock().now() - timedelta(seconds=1)
        t0 = time.perf_counter()
        await _arm(scheduler, run, topic, [past] * n)
        armed_s = time.perf_counter() - t0
        workers = [TimerPoller(scheduler, producer, settings.scheduler) for _ in range(pollers)]

        async def drain(p: TimerPoller) -> int:
            total = 0
            while (k := await p.release_due()) > 0:
                total += k
            return total

        t0 = time.perf_counter()
        fired = sum(await asyncio.gather(*(drain(p) for p in workers)))
        seconds = time.perf_counter() - t0
        left = await _count_pending(scheduler, run)
    finally:
        await res.close()
    return {
        "fired": fired,
        "seconds": seconds,
        "rate": fired / seconds,
        "arm_rate": n / armed_s,
        "left": left,
    }


async def _arm_ahead(
    scheduler: Scheduler, run: str, topic: str, n: int, *, spread_s: float, head_start_s: float
) -> datetime:
    """Arm n timers due over ``spread_s`` seconds from ``head_start_s`` on; return the first due time.

    A busy machine can take longer to arm than the head start: then the timers are withdrawn and
    armed again with twice the head start (three tries), instead of measuring arming as lateness.
    """
    for attempt in range(3):
        start = SystemClock().now() + timedelta(seconds=head_start_s)
        dues = [start + timedelta(seconds=spread_s * i / n) for i in range(n)]
        await _arm(scheduler, f"{run}-{attempt}", topic, dues)
        if SystemClock().now() <= start:
            return start
        await scheduler.pool.execute(
            "DELETE FROM herald_timers WHERE key LIKE $1", f"bench:{run}-{attempt}:%"
        )
        console.print(
            f"[yellow]arming {n:,} timers took over {head_start_s:.0f}s; again with twice the head start[/]"
        )
        head_start_s *= 2
    raise RuntimeError(f"arming {n:,} timers took longer than {head_start_s / 2:.0f}s three times")


async def steady(
    settings: HeraldSettings,
    spread_s: float,
    n: int = TIMERS,
    head_start_s: float = 5.0,
    catch_up_s: float = 600.0,
) -> dict[str, float]:
    """n timers due uniformly over ``spread_s`` seconds, from ``head_start_s`` on, under one running
    poller, which then has ``catch_up_s`` to release what is still due."""
    res = Resources(settings)
    run = f"steady-{time.time_ns()}"
    topic = f"{settings.topic_prefix}.bench.timers.{run}"
    try:
        await create_topics(settings, [topic], partitions=4)
        pool = await res.pool()
        producer = await res.producer()
        scheduler = Scheduler(pool, SystemClock(), namespace=settings.topic_prefix)
        start = await _arm_ahead(scheduler, run, topic, n, spread_s=spread_s, head_start_s=head_start_s)
        poller = TimerPoller(scheduler, producer, settings.scheduler)
        stopping = asyncio.Event()
        task = asyncio.create_task(poller.run(stopping))
        await asyncio.sleep(max(0.0, (start - SystemClock().now()).total_seconds()) + spread_s)
        deadline = time.monotonic() + catch_up_s
        while await _count_pending(scheduler, run):  # the poller catches up on whatever is still due
            if time.monotonic() > deadline:
                raise TimeoutError(f"timers still pending {catch_up_s:.0f}s after the last was due")
            await asyncio.sleep(0.2)
        stopping.set()
        await task
        lateness = await _lateness(settings, topic)
    finally:
        await res.close()
    lateness.sort()
    return {
        "released": len(lateness),
        "rate_offered": n / spread_s,
        "p50_ms": statistics.median(lateness),
        "p99_ms": lateness[int(len(lateness) * 0.99) - 1],
        "max_ms": lateness[-1],
    }


async def _lateness(settings: HeraldSettings, topic: str) -> list[float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # first lookup of a fresh topic
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[float] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for r in records:
                    (due_ms,) = struct.unpack(">q", r.value)
                    out.append(float(r.timestamp - due_ms))
        return out
    finally:
        await consumer.stop()


async def phase(b: Any) -> None:
    """``bench/run.py`` phase: add ``("timers", "bench.timers:phase")`` to its PHASES."""
    s = b.settings()
    with console.status("timers: backlog, 1 poller"):
        one = await backlog(s, 1)
    with console.status("timers: backlog, 2 pollers"):
        two = await backlog(s, 2)
    # Head start: three times what arming took in the backlog runs, so a slow machine arms in time.
    head_start = max(5.0, 3 * TIMERS / min(one["arm_rate"], two["arm_rate"]))
    # Catching up: 20× what the slower backlog run took to release them all.
    catch_up = max(600.0, 20 * TIMERS / min(one["rate"], two["rate"]))
    with console.status(f"timers: steady ({head_start:.0f}s head start)"):
        st = await steady(s, 20.0, head_start_s=head_start, catch_up_s=catch_up)
    b.add(Row("timers fired (100k due, 1 poller)", one["rate"], "timers/s"))
    b.add(Row("timers fired (100k due, 2 pollers)", two["rate"], "timers/s"))
    b.add(
        Row(
            "timer lateness p99 (100k over 20 s)",
            st["p99_ms"],
            "ms",
            note=f"p50 {st['p50_ms']:.0f} ms, max {st['max_ms']:.0f} ms, poll {s.scheduler.poll_interval_s}s",
        )
    )
    b.extra["timers"] = {"backlog_1": one, "backlog_2": two, "steady": st}


async def _main(args: argparse.Namespace) -> None:
    with DevStack(with_moto=False) as stack:
        settings = stack_settings(
            stack,
            "bt",
            scheduler=SchedulerSettings(poll_interval_s=args.poll_interval, batch_size=args.batch),
        )
        for pollers in (1, 2):
            r = await backlog(settings, pollers, args.timers)
            print(
                f"backlog, {pollers} poller(s): {r['fired']:,.0f} timers in {r['seconds']:.2f}s = "
                f"{r['rate']:,.0f} fired/s (armed at {r['arm_rate']:,.0f}/s, {r['left']:.0f} left)"
            )
        st = await steady(settings, args.spread, args.timers)
        print(
            f"steady, {st['released']:,.0f} timers over {args.spread:.0f}s "
            f"({st['rate_offered']:,.0f}/s offered), "
            f"poll {args.poll_interval}s: lateness p50 {st['p50_ms']:.0f} ms, p99 {st['p99_ms']:.0f} ms, "
            f"max {st['max_ms']:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=TIMERS)
    parser.add_argument("--spread", type=float, default=20.0, help="steady run: seconds the due times span")
    parser.add_argument("--poll-interval", type=float, default=SchedulerSettings().poll_interval_s)
    parser.add_argument("--batch", type=int, default=SchedulerSettings().batch_size)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
