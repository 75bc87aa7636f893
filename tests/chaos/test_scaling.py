"""Scaling storms, as KEDA does them: push 1 → 6 → 1 replicas and the classifier 1 → 4 → 1 while
events stream. Nothing lost, duplicates only under the same idempotency key, every replica stopped
by SIGTERM (one of them while its partitions were being revoked) finishes and commits (exit 0),
and the critical tier's latency during the storm is measured.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.chaos.conftest import new_run
from tests.chaos.driver import ChaosRun, Knobs, knobs
from tests.chaos.faults import critical_latencies, p99
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import Pipeline
from tests.chaos.scaling import Replicas, Stopped

# make chaos only: eight Python start-ups at once cost minutes of a loaded 2-core box. The push wedge
# it found after the scale-down (the broker kept naming a leader that had left mid-rebalance and
# refused every other member's sync) is undone by consumers/runtime/ghost_leader.py.
pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(900),
    pytest.mark.skipif(knobs().events < 10_000, reason="make chaos only (HERALD_CHAOS_EVENTS >= 10000)"),
]

SETTLE_S = 12.0  # a tansu group takes ~5-11 s to settle after a join


async def _dump_tasks(pipeline: Pipeline) -> None:
    """Each running process logs where it stands (``kill -USR1``, consumers/runtime/taskdump.py):
    its assignment and group generation, for the post-mortem of a wedge."""
    for proc in pipeline.procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
    await asyncio.sleep(1.0)


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


def sizes(knobs: Knobs) -> tuple[int, int]:
    """(push, classifier) replicas at the storm's peak: the issue's 6 and 4 in ``make chaos``;
    3 and 2 in ``make test`` (eight Python start-ups at once cost ~100 s of a loaded 2-core box)."""
    return (6, 4) if knobs.events >= 10_000 else (3, 2)


async def _storm(run: ChaosRun, replicas: Replicas, window: list[float], peak: tuple[int, int]) -> None:
    window.append(time.monotonic())
    run.say(f"scale up: push 1 -> {peak[0]}, classifier 1 -> {peak[1]}")
    await asyncio.gather(replicas.scale("push", peak[0]), replicas.scale("classifier", peak[1]))
    live_s = await replicas.live()
    run.say(f"{sum(peak) - 2} new replicas live after {live_s:.1f}s (Python start-up is CPU-bound)")
    await _sigterm_while_revoked(run, "push", replicas.stopped)
    await asyncio.sleep(SETTLE_S)
    run.say(f"scale down: push {peak[0]} -> 1, classifier {peak[1]} -> 1 (SIGTERM)")
    await asyncio.gather(replicas.scale("push", 1), replicas.scale("classifier", 1))
    run.say(f"scaled down: {[(s.name, s.rc, round(s.exit_s, 1)) for s in replicas.stopped]}")
    window.append(time.monotonic())


async def test_scaling_storm_loses_nothing(
    pipeline: Pipeline, ledger: Ledger, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    events = max(1500, chaos_knobs.events // 4)
    run = new_run(pipeline, users=60, events=events, seed=40)
    await pipeline.seed(run.users)
    replicas = Replicas(pipeline)
    window: list[float] = []
    peak = sizes(chaos_knobs)
    started = time.monotonic()
    try:
        await run.stream(events / 50, {50: lambda: _storm(run, replicas, window, peak)})
        acc = await run.drain(ledger, timeout_s=180)
    finally:
        await replicas.close()
    lat = critical_latencies(run, ledger, window[0], window[1])
    before = critical_latencies(run, ledger, run.t0, window[0])
    facts = {
        "events": events,
        "storm": f"push 1->{peak[0]}->1, classifier 1->{peak[1]}->1, push SIGTERM during revocation",
        "storm length (s)": f"{window[1] - window[0]:.1f}",
        "SIGTERM exits (name, rc, s)": [(s.name, s.rc, round(s.exit_s, 1)) for s in replicas.stopped],
        "critical p99 during storm (s)": f"{p99(lat):.2f} over {len(lat)} (max {max(lat, default=0):.2f})",
        "critical p99 before storm (s)": f"{p99(before):.2f} over {len(before)}",
        "wall time (s)": f"{time.monotonic() - started:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("scaling storm", acc, facts))
        print("\n".join(run.log))
    if not acc.complete:
        await _dump_tasks(pipeline)
    assert acc.complete, summary("scaling storm", acc, facts)
    # SIGTERM, even mid-revocation, lets a replica finish its batch and commit within the grace.
    assert len(replicas.stopped) == sum(peak) - 2 + 1
    assert all(s.rc == 0 for s in replicas.stopped), facts["SIGTERM exits (name, rc, s)"]
    assert lat, "no critical event was emitted during the storm"
    # The priority lane stalls no longer than a rebalance: a member's session (6 s here) runs out
    # and the group settles (~5-11 s on tansu), plus a loaded machine's slack.
    assert p99(lat) < 30.0, facts
    # And after the storm the group settles back: a fresh batch of events is delivered and every
    # process is ready again, so no consumer is left wedged for the tests that follow (runs saw
    # push left with no partitions after the last rebalance). Events first: a member the group
    # left without partitions rejoins only once records wait unread under a commit that has not
    # moved for HERALD_RUNTIME__ORPHAN_REJOIN_AFTER_S (60 s; consumers/runtime/orphan.py), so
    # waiting for readiness on an idle group would wait for a rejoin that has no reason to come.
    probe = new_run(pipeline, users=20, events=100, seed=41)
    await pipeline.seed(probe.users)
    probe_at = time.monotonic()
    await probe.stream(5.0)
    after = await probe.drain(ledger, timeout_s=150)
    facts_after = {"events": 100, "drained after (s)": f"{time.monotonic() - probe_at:.0f}"}
    with capsys.disabled():
        print("\n" + summary("after the storm", after, facts_after))
    try:
        await pipeline.wait_ready(timeout=60)
    except TimeoutError:
        await _dump_tasks(pipeline)
        raise
    assert after.complete, summary("after the storm", after, facts_after)
