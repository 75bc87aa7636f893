"""SIGKILL a random process every few seconds while events stream, stop Redis then PostgreSQL: nothing lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas.models import Channel
from tests.chaos.conftest import new_run
from tests.chaos.driver import ChaosRun, Knobs
from tests.chaos.faults import unbounded_channels
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import Pipeline
from tests.chaos.population import Planned, expectations

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]


async def test_kills_and_outages_lose_nothing(
    pipeline: Pipeline, ledger: Ledger, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    run = new_run(pipeline, users=max(40, chaos_knobs.events // 40), events=chaos_knobs.events, seed=10)
    await pipeline.seed(run.users)
    outage_s = 10.0
    n = len(run.events)

    # The classifier is spared from a few seconds before the Redis outage to its end, so that it
    # is up while Redis is down and the low tier's re-queue is exercised in every run.
    async def spare_classifier() -> None:
        run.spared.add("classifier")

    async def redis_outage() -> None:
        await run.outage("redis", outage_s)
        run.spared.discard("classifier")

    hooks = {
        n // 4 - n // 7: spare_classifier,
        n // 4: redis_outage,
        n // 2: lambda: run.outage("postgres", outage_s),
    }
    stop, done = asyncio.Event(), asyncio.Event()
    started = time.monotonic()
    killer = asyncio.create_task(run.killer(chaos_knobs.kill_every_s, stop))
    supervisor = asyncio.create_task(run.supervise(done))
    try:
        await run.stream(chaos_knobs.stream_s, hooks)
        stop.set()
        await killer
        acc = await run.drain(ledger, timeout_s=120 + chaos_knobs.events / 50)
    finally:
        stop.set()
        done.set()
        await asyncio.gather(killer, supervisor)
    # A process that was running when an outage began must ride it out (pause, then resume); one
    # started during an outage may exit (it cannot build its resources) and is restarted.
    crashed = run.crashes()
    elapsed = time.monotonic() - started
    limiter_deferred = [
        o
        for o in (o for os_ in ledger.by_event.values() for o in os_)
        if o.user_id in run.user_ids and o.reason == "rate_limiter_unavailable"
    ]
    deferred_by_limiter = len(limiter_deferred)
    unbounded = unbounded_channels(run, pipeline)  # no in-flight bound for these (see below)
    facts = {
        "events": n,
        "users": len(run.users),
        "kills (SIGKILL)": len(pipeline.kills),
        "outages": f"redis {outage_s:.0f}s, postgres {outage_s:.0f}s",
        "low tier re-queued (redis down)": deferred_by_limiter,
        "exits at start during outage": len(run.exits) - len(crashed),
        "crashes": len(crashed),
        "wall time (s)": f"{elapsed:.0f}",
        "killed near redis outage": ", ".join(sorted(unbounded)) or "-",
    }
    with capsys.disabled():
        print("\n" + summary("SIGKILL + outages", acc, facts, pipeline.in_flight_at_kills))
        print("\n".join(run.log))
    assert acc.complete, summary("SIGKILL + outages", acc, facts, pipeline.in_flight_at_kills)
    # A kill costs at most the provider calls in flight at that moment (the delivery ledger): each
    # one is resent (a possible duplicate) or reported failed_permanent/ambiguous, never both, so per
    # channel duplicates + ambiguous <= calls in flight at the kills. With Redis down the ledger is
    # skipped by design: a channel killed during (or just after) the Redis outage may replay sends
    # nobody marked, so the bound is checked for the other channels.
    for channel in [c.value for c in Channel if c.value not in unbounded]:
        cost = acc.duplicates[channel] + acc.ambiguous[channel]
        assert cost <= pipeline.in_flight_at_kills[channel], (
            channel,
            {"duplicates": acc.duplicates[channel], "ambiguous": acc.ambiguous[channel]},
            dict(pipeline.in_flight_at_kills),
        )
    assert not crashed, crashed
    # Redis down degraded as documented: the low tier was re-queued, no other tier was held. When
    # the classifier itself was killed as Redis went down, it spent the outage restarting and saw
    # no low-tier event with Redis down: then only "no other tier was held" can be checked.
    if not classifier_restarting_in_redis_outage(run, pipeline):
        assert deferred_by_limiter > 0
    assert {str(o.tier) for o in limiter_deferred} <= {"low"}
    assert len(pipeline.kills) >= 3
    assert acc.ok["delivered"] > n // 2
    # Control: the ledger does see a loss. An event that was never emitted is reported missing.
    ghost = Planned(n, f"{run.events[0].event_id[:8]}-ghost", "payment_receipt", run.events[0].user_id, {})
    by_id = {u.user_id: u for u in run.users}
    control = ledger.account(expectations(ghost, by_id[ghost.user_id]), run.user_ids)
    assert not control.complete and (control.missing or control.wrong)


def classifier_restarting_in_redis_outage(run: ChaosRun, pipeline: Pipeline) -> bool:
    """The classifier was killed from 10 s before a Redis outage to its end (joining its group
    again takes seconds), so it may have handled no event while Redis was down."""
    windows = [(down - 10.0, back) for svc, down, back in run.outages if svc == "redis"]
    return any(name == "classifier" and lo <= t <= hi for t, name in pipeline.kills for lo, hi in windows)
