"""Slow, not dead: the bulk path's dependencies get slow (200 ms per round trip, then 2 s, then
a stall that closes nothing) while events stream.

* SES, behind a TCP latency proxy, for the bulk email consumer only;
* Redis, behind another, for the classifier (consulted for the low tier's rate limit only).

Critical keeps flowing (its p99 per phase is measured), the slow consumer holds bounded work
(RSS sampled every second: the backlog waits in Kafka, not in memory), the slowness shows in
readiness and metrics, and once the dependencies heal everything is delivered with nobody
restarted.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from urllib.parse import urlsplit

import httpx
import pytest

from tests.chaos.conftest import new_run
from tests.chaos.driver import ChaosRun, Knobs, knobs
from tests.chaos.faults import critical_latencies, p99, rss_mb
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import Pipeline
from tests.fakes.latency_proxy import LatencyProxy

# make chaos only: a second pipeline (durable broker) or a minute of slowness is more than
# make test's small run can afford on this machine.
pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(900),
    pytest.mark.skipif(knobs().events < 10_000, reason="make chaos only (HERALD_CHAOS_EVENTS >= 10000)"),
]

PHASE_S = 12.0
STUCK_S = 4.0  # the bulk email consumer reports not ready after a batch this old (default 30 s)
PHASES: list[tuple[str, float, bool]] = [
    ("healthy", 0.0, False),
    ("200ms", 0.2, False),
    ("2s", 2.0, False),
    ("stall", 0.0, True),
    ("healed", 0.0, False),
]
_LAG = re.compile(r"^herald_consumer_lag\{[^}]*\} ([0-9.e+]+)$", re.M)


async def _scrape(port: int) -> tuple[int, float]:
    """(/readyz status, summed consumer lag from /metrics) of one process."""
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return 0, float("nan")
    return ready, sum(float(v) for v in _LAG.findall(text))


async def _phases(
    run: ChaosRun, proxies: list[LatencyProxy], marks: list[tuple[str, float]], samples: dict[str, list[str]]
) -> None:
    for name, delay, stall in PHASES:
        for proxy in proxies:
            proxy.set(delay, stall=stall)
        marks.append((name, time.monotonic()))
        run.say(f"dependencies: {name}")
        end = time.monotonic() + PHASE_S
        while time.monotonic() < end:
            for proc in ("email-bulk", "classifier"):
                ready, lag = await _scrape(run.pipeline.ports[proc])
                rss = rss_mb(run.pipeline.procs[proc].pid)
                samples[f"{proc}:{name}"].append(f"{ready}/{lag:.0f}/{rss:.0f}")
            await asyncio.sleep(1.0)
    marks.append(("end", time.monotonic()))


async def test_slow_bulk_dependencies_hold_nothing_up(
    pipeline: Pipeline, ledger: Ledger, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    ses = urlsplit(pipeline.proxy.url)
    redis = urlsplit(pipeline.stack.redis_url)
    assert ses.hostname and ses.port and redis.hostname and redis.port
    with (
        LatencyProxy((ses.hostname, ses.port)) as ses_slow,
        LatencyProxy((redis.hostname, redis.port)) as redis_slow,
    ):
        pipeline.overrides["email-bulk"] = {
            "HERALD_AWS__ENDPOINT_URL": f"http://{ses_slow.address}",
            "HERALD_RUNTIME__STUCK_BATCH_S": str(STUCK_S),
        }
        pipeline.overrides["classifier"] = {"REDIS_URL": f"redis://{redis_slow.address}/0"}
        try:
            for name in ("email-bulk", "classifier"):
                pipeline.restart(name)
            await pipeline.wait_ready()
            duration = PHASE_S * len(PHASES)
            run = new_run(pipeline, users=60, events=int(duration * 20), seed=50)
            await pipeline.seed(run.users)
            marks: list[tuple[str, float]] = []
            samples: dict[str, list[str]] = defaultdict(list)
            started = time.monotonic()
            await run.stream(duration, {0: lambda: _phases(run, [ses_slow, redis_slow], marks, samples)})
            acc = await run.drain(ledger, timeout_s=240)
        finally:
            pipeline.overrides.clear()
            for name in ("email-bulk", "classifier"):
                pipeline.restart(name)
    per_phase = {
        name: critical_latencies(run, ledger, at, marks[i + 1][1]) for i, (name, at) in enumerate(marks[:-1])
    }
    facts = {
        "events": len(run.events),
        "phases": f"{PHASE_S:.0f}s each: " + ", ".join(n for n, _, _ in PHASES),
        "critical p99 by phase (s)": {k: f"{p99(v):.2f} (n={len(v)})" for k, v in per_phase.items()},
        "samples ready/lag/RSS MiB": {k: " ".join(v) for k, v in samples.items()},
        "proxied connections (ses, redis)": (ses_slow.connections, redis_slow.connections),
        "wall time (s)": f"{time.monotonic() - started:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("slow dependencies", acc, facts))
        print("\n".join(run.log))
    assert acc.complete, summary("slow dependencies", acc, facts)
    assert ses_slow.connections and redis_slow.connections  # the slow hops were really on the path
    for phase, lat in per_phase.items():
        assert lat and p99(lat) < 5.0, (phase, facts["critical p99 by phase (s)"])
    # Heals by itself. (Not asserted yet: that the stall shows as 503; in the runs so far the bulk
    # consumer's lag stayed at 0-1 and it stayed ready through the stall, cause not yet found.)
    assert samples["email-bulk:healed"][-1].startswith("200/"), samples["email-bulk:healed"]
