"""Workflow steps on the durable scheduler: steps/s released by one executor, lateness p99 at 100k pending.

Both runs use the real executor (``consumers.workflow``: state row, step log, the classifier's
planning, a profile lookup per step) on the real stack, with a one-step route (``send: [in_app]``,
no address needed) so a fired step is one whole workflow step:

* **throughput**: ``--burst`` workflows all due; one poller (the fallback's) drains them.
  Figure: steps run per second.
* **lateness**: 100k steps pending, of which ``--due`` fall due over the next ``--spread`` seconds
  and the rest a day later; one poller runs at the default ``poll_interval_s``. Lateness of a
  step = when it ran (``herald_workflow_runs.ran_at``) minus its timer's due time.

``python -m bench.workflows`` runs it alone on a fresh embedded stack; ``phase`` plugs into
``bench/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.common import stack_settings
from bench.run import Row, console
from consumers.classifier.routing import Route, load_routing
from consumers.devstack import DevStack
from consumers.infra.clock import SystemClock
from consumers.infra.keys import notification_id
from consumers.infra.resources import Resources
from consumers.infra.settings import ClassifierSettings, HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.scheduler.store import Scheduler, Timer, TimerPoller
from consumers.workflow.context import start_timer
from consumers.workflow.process import fire_handlers, workflow_context
from schemas.codec import default_codec
from schemas.models import DomainEvent

__all__ = ["lateness", "main", "phase", "throughput"]

PENDING = 100_000
_CHUNK = 5_000
_ROUTE = {
    "match": "bench.workflow",
    "tier": "medium",
    "category": "bench",
    "template": "activity",
    "steps": [{"send": ["in_app"]}],
}


def _settings(settings: HeraldSettings, directory: Path) -> tuple[HeraldSettings, Route]:
    path = directory / f"bench-routing-{time.time_ns()}.yaml"
    path.write_text(yaml.safe_dump({"routes": [_ROUTE]}))
    route = load_routing(path).match("bench.workflow")
    assert route is not None
    return settings.model_copy(update={"classifier": ClassifierSettings(routing_file=path)}), route


def _timers(run: str, route: Route, dues: list[datetime], first: int) -> list[Timer]:
    codec = default_codec()
    out = []
    for i, due in enumerate(dues, start=first):
        event = DomainEvent(
            event_id=f"{run}-{i}", type="bench.workflow", occurred_at=due, user_id=f"bu{i % 1000}"
        )
        out.append(
            start_timer(notification_id(event.event_id, event.user_id), route, codec.encode(event), due, None)
        )
    return out


async def _arm(scheduler: Scheduler, run: str, route: Route, dues: list[datetime]) -> None:
    for start in range(0, len(dues), _CHUNK):
        await scheduler.arm(_timers(run, route, dues[start : start + _CHUNK], start))


async def _ran(scheduler: Scheduler, run: str) -> int:
    value = await scheduler.pool.fetchval(
        "SELECT count(*) FROM herald_workflows WHERE event_id LIKE $1 AND state = 'done'", f"{run}-%"
    )
    return int(value)


async def _poller(res: Resources, settings: HeraldSettings) -> tuple[Scheduler, TimerPoller]:
    await create_topics(settings, [res.topics.outcomes, *res.topics.channel_topics()])
    scheduler = Scheduler(await res.pool(), SystemClock(), namespace=settings.topic_prefix)
    wf, _ = await workflow_context(res, scheduler, default_codec())
    return scheduler, TimerPoller(scheduler, await res.producer(), settings.scheduler, fire_handlers(wf))


async def throughput(base: HeraldSettings, directory: Path, n: int) -> dict[str, float]:
    """n workflows all due; one executor drains them. Returns steps/s."""
    settings, route = _settings(base, directory)
    res = Resources(settings)
    run = f"wfburst-{time.time_ns()}"
    try:
        scheduler, poller = await _poller(res, settings)
        await _arm(scheduler, run, route, [SystemClock().now() - timedelta(seconds=1)] * n)
        t0 = time.perf_counter()
        fired = 0
        while (k := await poller.release_due()) > 0:
            fired += k
        seconds = time.perf_counter() - t0
        ran = await scheduler.pool.fetchval(
            "SELECT count(*) FROM herald_workflow_runs r JOIN herald_workflows w USING (notification_id) "
            "WHERE w.event_id LIKE $1",
            f"{run}-%",
        )
    finally:
        await res.close()
    return {"fired": fired, "steps": float(ran), "seconds": seconds, "rate": float(ran) / seconds}


async def lateness(
    base: HeraldSettings, directory: Path, due: int, spread_s: float, step_rate: float
) -> dict[str, float]:
    """``PENDING`` steps pending, ``due`` of them due over ``spread_s``: lateness of those. The head
    start before the first is due and the time allowed to catch up scale with this machine: the
    arming rate measured here and ``step_rate`` (steps/s an executor ran in :func:`throughput`)."""
    settings, route = _settings(base, directory)
    res = Resources(settings)
    run = f"wflate-{time.time_ns()}"
    try:
        scheduler, poller = await _poller(res, settings)
        later = SystemClock().now() + timedelta(days=1)
        t0 = time.perf_counter()
        await _arm(scheduler, f"{run}-later", route, [later] * (PENDING - due))
        arm_rate = (PENDING - due) / (time.perf_counter() - t0)
        # Three times what arming the due ones should take, so arming is never measured as lateness.
        start = SystemClock().now() + timedelta(seconds=max(5.0, 3 * due / arm_rate))
        await _arm(scheduler, run, route, [start + timedelta(seconds=spread_s * i / due) for i in range(due)])
        stopping = asyncio.Event()
        task = asyncio.create_task(poller.run(stopping))
        await asyncio.sleep(max(0.0, (start - SystemClock().now()).total_seconds()) + spread_s)
        # An executor that fell behind catches up (its lateness counts too): 20× what running them
        # all took in the burst.
        catch_up_s = max(120.0, 20 * due / step_rate)
        deadline = time.monotonic() + catch_up_s
        while await _ran(scheduler, run) < due:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow steps still not run {catch_up_s:.0f}s after the last was due")
            await asyncio.sleep(0.2)
        stopping.set()
        await task
        rows = await scheduler.pool.fetch(
            "SELECT extract(epoch FROM r.ran_at - t.due_at) * 1000 AS ms FROM herald_workflow_runs r "
            "JOIN herald_workflows w USING (notification_id) "
            "JOIN herald_timers t ON t.kind = 'workflow_step' AND t.data->>'notification_id' = r.notification_id "
            "WHERE w.event_id LIKE $1 AND w.event_id NOT LIKE $2",
            f"{run}-%",
            f"{run}-later-%",
        )
        await scheduler.pool.execute(
            "UPDATE herald_timers SET state = 'cancelled' WHERE state = 'pending' AND kind = 'workflow_step' "
            "AND due_at >= $1",
            later - timedelta(seconds=1),
        )
    finally:
        await res.close()
    late = sorted(float(r["ms"]) for r in rows)
    return {
        "ran": len(late),
        "due": due,
        "p50_ms": statistics.median(late),
        "p99_ms": late[max(0, int(len(late) * 0.99) - 1)],
        "max_ms": late[-1],
    }


async def phase(b: Any) -> None:
    """``bench/run.py`` phase ``workflows``."""
    s = b.settings()
    directory = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    with console.status("workflows: burst, 1 executor"):
        burst = await throughput(s, directory, 5_000)
    with console.status("workflows: lateness at 100k pending"):
        late = await lateness(s, directory, 2_000, 20.0, burst["rate"])
    b.add(Row("workflow steps run (5k due, 1 executor)", burst["rate"], "steps/s"))
    b.add(
        Row(
            "workflow step lateness p99 (100k pending)",
            late["p99_ms"],
            "ms",
            note=f"p50 {late['p50_ms']:.0f} ms, max {late['max_ms']:.0f} ms; 2k due over 20 s",
        )
    )
    b.extra["workflows"] = {"burst": burst, "lateness": late}


async def _main(args: argparse.Namespace) -> None:
    with DevStack(with_moto=False) as stack:
        settings = stack_settings(stack, "bw")
        directory = Path(args.dir)
        r = await throughput(settings, directory, args.burst)
        print(
            f"burst: {r['steps']:,.0f} steps in {r['seconds']:.2f}s = {r['rate']:,.0f} steps/s (one executor)"
        )
        late = await lateness(settings, directory, args.due, args.spread, r["rate"])
        print(
            f"lateness, {PENDING:,} pending, {late['ran']:,}/{args.due:,} due over {args.spread:.0f}s: "
            f"p50 {late['p50_ms']:.0f} ms, p99 {late['p99_ms']:.0f} ms, max {late['max_ms']:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--burst", type=int, default=5_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--spread", type=float, default=20.0)
    parser.add_argument("--dir", default="/tmp", help="where the bench routing file is written")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
