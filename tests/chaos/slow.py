"""Shared by the slow-dependency runs (``test_slow.py``): the phases, and what is sampled in them.

Each phase sets every latency proxy the same way for ``PHASE_S`` seconds; once a second the
watched processes are scraped: ``/readyz`` status, summed ``herald_consumer_lag`` and RSS.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import httpx

from tests.chaos.driver import ChaosRun
from tests.chaos.faults import rss_mb
from tests.fakes.latency_proxy import LatencyProxy

__all__ = ["PHASES", "PHASE_S", "STUCK_S", "Samples", "phases", "ready_within", "scrape"]

PHASE_S = 12.0
STUCK_S = 4.0  # the slow consumers report not ready after a batch this old (default 30 s)
PHASES: list[tuple[str, float, bool]] = [
    ("healthy", 0.0, False),
    ("200ms", 0.2, False),
    ("2s", 2.0, False),
    ("stall", 0.0, True),
    ("healed", 0.0, False),
]
_LAG = re.compile(r"^herald_consumer_lag\{[^}]*\} ([0-9.e+]+)$", re.M)


@dataclass
class Sample:
    ready: int  # /readyz status (0: no answer)
    lag: float
    rss_mb: float

    def __str__(self) -> str:
        return f"{self.ready}/{self.lag:.0f}/{self.rss_mb:.0f}"


@dataclass
class Samples:
    """proc -> phase -> one sample a second; phase marks (name, time.monotonic()) ending with "end"."""

    by: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    marks: list[tuple[str, float]] = field(default_factory=list)
    ready_after: dict[str, float | None] = field(default_factory=dict)  # proc -> s to ready after the drain

    def add(self, proc: str, phase: str, sample: Sample) -> None:
        self.by.setdefault(proc, {}).setdefault(phase, []).append(sample)

    def of(self, proc: str, phase: str) -> list[Sample]:
        return self.by.get(proc, {}).get(phase, [])

    def max_rss(self, proc: str) -> float:
        return max((s.rss_mb for per in self.by.get(proc, {}).values() for s in per), default=0.0)

    def report(self) -> dict[str, str]:
        return {
            f"{proc}:{phase}": " ".join(map(str, samples))
            for proc, per in self.by.items()
            for phase, samples in per.items()
        }


async def scrape(port: int) -> tuple[int, float]:
    """(/readyz status, summed consumer lag from /metrics) of one process."""
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return 0, float("nan")
    return ready, sum(float(v) for v in _LAG.findall(text))


async def ready_within(port: int, timeout_s: float) -> float | None:
    """Seconds until the process's /readyz answers 200 (None: not within ``timeout_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if (await scrape(port))[0] == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return None


async def phases(
    run: ChaosRun, proxies: list[LatencyProxy], watched: list[str], samples: Samples, stall_s: float = PHASE_S
) -> None:
    for name, delay, stall in PHASES:
        for proxy in proxies:
            proxy.set(delay, stall=stall)
        samples.marks.append((name, time.monotonic()))
        run.say(f"dependencies: {name}")
        end = time.monotonic() + (stall_s if stall else PHASE_S)
        while time.monotonic() < end:
            for proc in watched:
                ready, lag = await scrape(run.pipeline.ports[proc])
                samples.add(proc, name, Sample(ready, lag, rss_mb(run.pipeline.procs[proc].pid)))
            await asyncio.sleep(1.0)
    samples.marks.append(("end", time.monotonic()))
