"""Scaling storms, as KEDA does them: push 1 → 6 → 1 replicas and the classifier 1 → 4 → 1 while
events stream. Nothing lost, duplicates only under the same idempotency key, every replica stopped
by SIGTERM (one of them while its partitions were being revoked) finishes and commits (exit 0),
and the critical tier's latency during the storm is measured.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC

import pytest

from schemas.models import OutcomeStatus
from tests.chaos.conftest import new_run
from tests.chaos.driver import ChaosRun, Knobs
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import Pipeline
from tests.chaos.population import TIER
from tests.chaos.scaling import Replicas, Stopped

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

SETTLE_S = 12.0  # a tansu group takes ~5-11 s to settle after a join


async def _sigterm_while_revoked(run: ChaosRun, name: str, stopped: list[Stopped]) -> None:
    """SIGTERM the pipeline's own replica a second after others joined: its partitions are being
    revoked; it must still finish and commit. Kubernetes then starts it again."""
    await asyncio.sleep(1.0)
    proc = run.pipeline.procs[name]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(proc.wait, 60)
    stopped.append(Stopped(f"{name} (revoking)", rc, time.monotonic() - t0))
    run.pipeline.start(name)
    run.say(f"{name}: SIGTERM during revocation, exit {rc}, started again")


async def _storm(run: ChaosRun, replicas: Replicas, window: list[float]) -> None:
    window.append(time.monotonic())
    run.say("scale up: push 1 -> 6, classifier 1 -> 4")
    await asyncio.gather(replicas.scale("push", 6), replicas.scale("classifier", 4))
    await _sigterm_while_revoked(run, "push", replicas.stopped)
    await asyncio.sleep(SETTLE_S)
    run.say("scale down: push 6 -> 1, classifier 4 -> 1 (SIGTERM)")
    await asyncio.gather(replicas.scale("push", 1), replicas.scale("classifier", 1))
    run.say(f"scaled down: {[(s.name, s.rc, round(s.exit_s, 1)) for s in replicas.stopped]}")
    window.append(time.monotonic())


def critical_latencies(run: ChaosRun, ledger: Ledger, start: float, end: float) -> list[float]:
    """Seconds from emit to the first SENT outcome, per (critical event, channel), emitted in the window."""
    wall_minus_mono = time.time() - time.monotonic()
    critical = {e.event_id for e in run.events if TIER[e.event_type] == "critical"}
    first: dict[tuple[str, str], float] = {}
    for event_id in critical:
        sent_at = run.emitted.get(event_id)
        if sent_at is None or not start <= sent_at <= end:
            continue
        for o in ledger.by_event.get(event_id, []):
            if o.status is not OutcomeStatus.SENT:
                continue
            at = o.recorded_at.replace(tzinfo=o.recorded_at.tzinfo or UTC).timestamp() - wall_minus_mono
            key = (event_id, str(o.channel))
            first[key] = min(first.get(key, at), at)
    return sorted(at - run.emitted[e] for (e, _), at in first.items())


def p99(xs: list[float]) -> float:
    return xs[int(0.99 * (len(xs) - 1))] if xs else float("nan")


async def test_scaling_storm_loses_nothing(
    pipeline: Pipeline, ledger: Ledger, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    events = max(1500, chaos_knobs.events // 4)
    run = new_run(pipeline, users=60, events=events, seed=40)
    await pipeline.seed(run.users)
    replicas = Replicas(pipeline)
    window: list[float] = []
    started = time.monotonic()
    try:
        await run.stream(events / 50, {50: lambda: _storm(run, replicas, window)})
        acc = await run.drain(ledger, timeout_s=180)
    finally:
        await replicas.close()
    lat = critical_latencies(run, ledger, window[0], window[1])
    before = critical_latencies(run, ledger, run.t0, window[0])
    facts = {
        "events": events,
        "storm": "push 1->6->1, classifier 1->4->1, push SIGTERM during revocation",
        "storm length (s)": f"{window[1] - window[0]:.1f}",
        "SIGTERM exits (name, rc, s)": [(s.name, s.rc, round(s.exit_s, 1)) for s in replicas.stopped],
        "critical p99 during storm (s)": f"{p99(lat):.2f} over {len(lat)} (max {max(lat, default=0):.2f})",
        "critical p99 before storm (s)": f"{p99(before):.2f} over {len(before)}",
        "wall time (s)": f"{time.monotonic() - started:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("scaling storm", acc, facts))
        print("\n".join(run.log))
    assert acc.complete, summary("scaling storm", acc, facts)
    # SIGTERM, even mid-revocation, lets a replica finish its batch and commit within the grace.
    assert len(replicas.stopped) == 5 + 3 + 1
    assert all(s.rc == 0 for s in replicas.stopped), facts["SIGTERM exits (name, rc, s)"]
    assert lat, "no critical event was emitted during the storm"
    # The priority lane stalls no longer than the rebalances themselves (the storm's length).
    assert p99(lat) < window[1] - window[0], facts
