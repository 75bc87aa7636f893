"""Restart the broker twice while events stream (SIGKILL once, SIGTERM once): every process
reconnects by itself, nothing is lost, duplicates keep their idempotency key.

The broker stores its log in S3 (moto) here, so a restart keeps topics, records and the
groups' committed offsets, as a production cluster would across a broker restart.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.chaos.conftest import new_run
from tests.chaos.driver import Knobs, knobs
from tests.chaos.faults import BrokerRestart, broker_restart, readiness
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import Pipeline

# make chaos only: a second pipeline (durable broker) or a minute of slowness is more than
# make test's small run can afford on this machine.
pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(900),
    pytest.mark.skipif(knobs().events < 10_000, reason="make chaos only (HERALD_CHAOS_EVENTS >= 10000)"),
]

RATE_PER_S = 10.0  # the S3-backed broker on moto is slow per hop; see DURABLE_ENV


async def test_broker_restarts_lose_nothing(
    durable_pipeline: Pipeline, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = durable_pipeline
    events = min(900, max(300, chaos_knobs.events // 8))
    run = new_run(pipeline, users=40, events=events, seed=30)
    await pipeline.seed(run.users)
    restarts: list[BrokerRestart] = []

    async def restart(sig: signal.Signals) -> None:
        restarts.append(await broker_restart(run, sig, pause_s=2.0))

    n = len(run.events)
    hooks = {n // 3: lambda: restart(signal.SIGKILL), 2 * n // 3: lambda: restart(signal.SIGTERM)}
    done = asyncio.Event()
    supervisor = asyncio.create_task(run.supervise(done))
    started = time.monotonic()
    ledger = Ledger(pipeline)
    try:
        await run.stream(n / RATE_PER_S, hooks)
        acc = await run.drain(ledger, timeout_s=180)
        ready = await readiness(pipeline)
    finally:
        done.set()
        await supervisor
        await ledger.close()
    facts = {
        "events": n,
        "broker restarts": ", ".join(
            f"{r.sig}: down {r.down_s:.1f}s, first delivery {r.first_delivery_s}s after back"
            for r in restarts
        ),
        "processes that exited": [f"{name} rc={rc}" for name, rc, _, _ in run.exits],
        "readyz after": ready,
        "wall time (s)": f"{time.monotonic() - started:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("broker restarts (durable log)", acc, facts))
        print("\n".join(run.log))
    assert acc.complete, summary("broker restarts", acc, facts)
    # Reconnected on their own: nobody exited, everybody ready again.
    assert not run.exits, facts["processes that exited"]
    assert set(ready.values()) == {200}, ready
    assert [r.sig for r in restarts] == ["SIGKILL", "SIGTERM"]
    assert all(r.first_delivery_s is not None for r in restarts), facts
