"""Provider storms: SES throttling, FCM 503 with Retry-After, a webhook endpoint answering 500.

Everything is eventually delivered, retries follow the (shortened) schedules attempt by
attempt, a Retry-After is honoured as a floor, and the storm blocks no partition: healthy
webhook endpoints and the in-app inbox keep their latency while it lasts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
from aiokafka.partitioner import DefaultPartitioner

from consumers.infra.keys import notification_id
from consumers.scheduler.retries import count_tries, wait_of, was_attempted
from schemas.models import DeliveryOutcome, OutcomeStatus
from tests.chaos.conftest import new_run
from tests.chaos.driver import ChaosRun, Knobs
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import CHAOS_ENV, Pipeline
from tests.fakes.fault_proxy import SES_THROTTLE

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

SCHEDULES: dict[str, list[float]] = json.loads(CHAOS_ENV["HERALD_FALLBACK__RETRY_SCHEDULES_S"])
JITTER = float(CHAOS_ENV["HERALD_FALLBACK__RETRY_JITTER"])
FCM_RETRY_AFTER_S = 3


async def _ses_storm(run: ChaosRun, seconds: float) -> None:
    run.pipeline.proxy.inject(SES_THROTTLE, times=10**9, match="outbound-emails")
    run.say(f"SES throttling (429 TooManyRequests) for {seconds:.0f}s")
    await asyncio.sleep(seconds)
    run.pipeline.proxy.clear()
    run.say("SES healthy")


async def _fcm_storm(run: ChaosRun, seconds: float) -> None:
    run.pipeline.fcm.fault("UNAVAILABLE", count=-1, retry_after=FCM_RETRY_AFTER_S)
    run.say(f"FCM 503 UNAVAILABLE, Retry-After {FCM_RETRY_AFTER_S}, for {seconds:.0f}s")
    await asyncio.sleep(seconds)
    with run.pipeline.fcm.state.lock:
        run.pipeline.fcm.state.faults.clear()
    run.say("FCM healthy")


async def _webhook_storm(run: ChaosRun, endpoint: str, seconds: float) -> None:
    behaviour = run.pipeline.behaviours[endpoint]
    behaviour.status = 500
    run.say(f"webhook {endpoint} answers 500 for {seconds:.0f}s")
    await asyncio.sleep(seconds)
    behaviour.status = 200
    run.say(f"webhook {endpoint} healthy")


def _check_retries(outcomes: list[DeliveryOutcome], channel: str) -> tuple[int, list[str]]:
    """(retries seen, problems): attempts go 1, 2, 3... each after at least its scheduled delay.

    The delay is the schedule's step of the tries so far, as the planner counts them: a send that
    reached a provider moves one step, a send that did not (every breaker open, the recipient
    backing off) half a step (``consumers/scheduler/retries.py``); only real tries use up the
    schedule."""
    problems: list[str] = []
    by_attempt: dict[int, DeliveryOutcome] = {}
    for o in sorted(outcomes, key=lambda o: o.recorded_at):
        by_attempt.setdefault(o.attempt, o)
    attempts = sorted(by_attempt)
    if attempts != list(range(1, len(attempts) + 1)):
        problems.append(f"attempts not consecutive: {attempts}")
    schedule = SCHEDULES[channel]
    real = sum(1 for a in attempts if was_attempted(by_attempt[a]))
    if real > len(schedule) + 1:
        problems.append(f"{real} real tries > schedule of {len(schedule)} retries")
    tries = None
    for a in attempts[:-1]:
        failed, nxt = by_attempt[a], by_attempt.get(a + 1)
        if failed.status is not OutcomeStatus.FAILED_RETRYABLE or nxt is None:
            continue
        tries = count_tries(a, tries, attempted=was_attempted(failed), now=failed.recorded_at)
        floor = wait_of(tries, schedule, grows=False)[0] * (1 - JITTER)
        if failed.retry_after_ms:
            floor = max(floor, failed.retry_after_ms / 1000)
        gap = (nxt.recorded_at - failed.recorded_at).total_seconds()
        # recorded_at is taken after the provider answered: allow the next call's own latency only
        if gap < floor - 0.05:
            problems.append(f"attempt {a + 1} came {gap:.2f}s after attempt {a}, scheduled >= {floor:.2f}s")
    return len(attempts) - 1, problems


async def test_provider_storms_deliver_everything_on_schedule(
    pipeline: Pipeline, ledger: Ledger, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = chaos_knobs.scale
    ses_s, fcm_s, hook_s = 30 * scale, 30 * scale, 60 * scale
    events = max(400, chaos_knobs.events // 5)
    run = new_run(pipeline, users=40, events=events, seed=20)
    await pipeline.seed(run.users)
    storm_ep = next(ep for u in run.users for ep in u.endpoints)
    healthy_eps = {ep for u in run.users for ep in u.endpoints} - {storm_ep}
    hooks = {
        5: lambda: _ses_storm(run, ses_s),
        6: lambda: _fcm_storm(run, fcm_s),
        7: lambda: _webhook_storm(run, storm_ep, hook_s),
    }
    started = time.monotonic()
    storm_start = started
    await run.stream(max(hook_s, 20.0), hooks)
    storm_end = time.monotonic()
    acc = await run.drain(ledger, timeout_s=150)
    elapsed = time.monotonic() - started

    run_outcomes = [o for os_ in ledger.by_event.values() for o in os_ if o.user_id in run.user_ids]
    failed = Counter(str(o.channel) for o in run_outcomes if o.status is OutcomeStatus.FAILED_RETRYABLE)
    exhausted = [o for o in run_outcomes if o.status is OutcomeStatus.EXHAUSTED]
    retries: Counter[str] = Counter()
    problems: list[str] = []
    by_key: dict[str, list[DeliveryOutcome]] = {}
    for o in run_outcomes:
        if o.channel is not None and o.status in (OutcomeStatus.SENT, OutcomeStatus.FAILED_RETRYABLE):
            by_key.setdefault(o.idempotency_key or "", []).append(o)
    for key, outs in by_key.items():
        n, why = _check_retries(outs, str(outs[0].channel))
        retries[str(outs[0].channel)] += n
        problems += [f"{outs[0].channel} {key}: {w}" for w in why]

    # No partition blocked: healthy endpoints and the inbox kept flowing during the storm.
    lat_hooks = sorted(
        d.at - run.emitted[json.loads(d.body)["event_id"]]
        for d in pipeline.receiver.deliveries
        if d.accepted
        and d.path.rsplit("/", 1)[1] in healthy_eps
        and storm_start <= d.at <= storm_end
        and json.loads(d.body).get("event_id") in run.emitted
    )
    per_ep: dict[str, list[float]] = {}
    for d in pipeline.receiver.deliveries:
        body = json.loads(d.body)
        ep = d.path.rsplit("/", 1)[1]
        if (
            d.accepted
            and ep in healthy_eps
            and storm_start <= d.at <= storm_end
            and body.get("event_id") in run.emitted
        ):
            per_ep.setdefault(ep, []).append(d.at - run.emitted[body["event_id"]])
    parts = list(range(pipeline.settings.partitions))
    partition = {ep: DefaultPartitioner()(ep.encode(), parts, parts) for ep in [storm_ep, *healthy_eps]}
    assert pipeline.pool is not None
    in_app_lat = await _inbox_latency(pipeline, run, storm_start, storm_end)
    facts = {
        "healthy endpoints: p99 (s), partition": {
            ep: (round(p99(sorted(v)), 2), partition[ep]) for ep, v in sorted(per_ep.items())
        },
        "storm endpoint partition": partition[storm_ep],
        "events": len(run.events),
        "storms": f"SES 429 {ses_s:.0f}s, FCM 503 {fcm_s:.0f}s (Retry-After {FCM_RETRY_AFTER_S}), "
        f"webhook 500 {hook_s:.0f}s",
        "failed_retryable outcomes": dict(failed),
        "retries (attempts after the 1st)": dict(retries),
        "webhook attempts on storm endpoint": pipeline.behaviours[storm_ep].requests,
        "exhausted": len(exhausted),
        "healthy webhook p99 during storm (s)": f"{p99(lat_hooks):.2f} over {len(lat_hooks)}",
        "in-app p99 during storm (s)": f"{p99(in_app_lat):.2f} over {len(in_app_lat)}",
        "wall time (s)": f"{elapsed:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("provider storms", acc, facts))
        print("\n".join(run.log))
        for p in problems[:10]:
            print("  ! retry", p)
    assert acc.complete, summary("provider storms", acc, facts)
    assert not exhausted
    assert not problems, problems[:10]
    for channel in ("email", "push", "webhook"):
        assert failed[channel] > 0, f"the {channel} storm produced no failed_retryable outcome"
    # A failing endpoint must not hold back endpoints on other partitions. One on the failing
    # endpoint's own partition (endpoint ids are random per run: in ~44 % of runs one is) waits for
    # the poll batch, which ends only when the failing key's in-process retries have run: bounded,
    # not free (known to exceed 3 s at full scale, make chaos).
    others = sorted(x for ep, v in per_ep.items() if partition[ep] != partition[storm_ep] for x in v)
    sharing = sorted(x for ep, v in per_ep.items() if partition[ep] == partition[storm_ep] for x in v)
    assert lat_hooks, "no healthy webhook delivery during the storm"
    assert not others or p99(others) < 3.0, facts["healthy endpoints: p99 (s), partition"]
    assert not sharing or p99(sharing) < 10.0, facts["healthy endpoints: p99 (s), partition"]
    assert in_app_lat and p99(in_app_lat) < 10.0, in_app_lat[-5:]


def p99(xs: list[float]) -> float:
    return xs[int(0.99 * (len(xs) - 1))] if xs else float("nan")


async def _inbox_latency(pipeline: Pipeline, run: ChaosRun, start: float, end: float) -> list[float]:
    """Seconds from emit to inbox row, for events emitted during the storm."""
    assert pipeline.pool is not None
    rows = await pipeline.pool.fetch(
        "SELECT notification_id, extract(epoch from created_at) AS at FROM herald_inbox WHERE user_id = ANY($1)",
        list(run.user_ids),
    )
    wall_minus_mono = time.time() - time.monotonic()
    nid_to_event = {notification_id(e.event_id, e.user_id): e.event_id for e in run.events}
    out = []
    for r in rows:
        event_id = nid_to_event.get(r["notification_id"])
        if event_id is None or event_id not in run.emitted:
            continue
        sent_at = run.emitted[event_id]
        if start <= sent_at <= end:
            out.append(float(r["at"]) - wall_minus_mono - sent_at)
    return sorted(out)
