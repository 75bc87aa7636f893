"""SES answers 503 for a minute while events stream: email fails over to SMTP, then comes back.

The two email processes are restarted with ``HERALD_PROVIDERS__EMAIL=["ses","smtp"]`` and the
``smtp`` provider pointed at a real SMTP server (aiosmtpd, :class:`SmtpSink`); SES stays moto
behind the pipeline's :class:`FaultProxy`, which answers every SendEmail with SES's own 503
``ServiceUnavailable`` for the outage. The breaker both processes share in Redis opens, SMTP
takes the mail within seconds, and when SES recovers a half-open probe closes the breaker and
SES takes the traffic again. Nothing is lost and nothing is sent twice: a 503 is a refusal (the
provider did not take the message), so the second provider cannot duplicate it.

What is measured and printed: seconds from outage start to the first message the SMTP server
received, seconds from recovery to the first SendEmail that reached moto, lost, duplicates,
and every breaker transition as Redis held it. The outage lasts ``HERALD_CHAOS_SES_OUTAGE_S``
seconds (default: the issue's 60 s times ``HERALD_CHAOS_SCALE``: 30 s in ``make test``, 60 s in
``make chaos``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as redis_asyncio

from consumers.channel.breaker import BreakerState
from consumers.devstack.processes import free_port, spawn_herald
from consumers.devstack.smtp_sink import SmtpSink
from schemas.models import OutcomeStatus
from tests.chaos.conftest import new_run
from tests.chaos.driver import ChaosRun, Knobs
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import PROCESSES, Pipeline
from tests.fakes.fault_proxy import SES_5XX

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

EMAIL_PROCESSES = ("email-priority", "email-bulk")
SEND = "outbound-emails"  # SES v2 SendEmail: POST /v2/email/outbound-emails
BEFORE_S, AFTER_S = 10.0, 30.0  # streaming before the outage, and after it (open_s is 15 s)


def outage_seconds(knobs: Knobs) -> float:
    return float(os.environ.get("HERALD_CHAOS_SES_OUTAGE_S", str(60 * knobs.scale)))


class FailoverLedger(Ledger):
    """The chaos ledger, with the SMTP server's messages counted as email deliveries too."""

    def __init__(self, pipeline: Pipeline, sink: SmtpSink) -> None:
        super().__init__(pipeline)
        self.sink = sink
        self.smtp_seen = 0

    async def _read_providers(self) -> None:
        await super()._read_providers()
        mails = self.sink.messages()
        for m in mails[self.smtp_seen :]:
            parsed = email.message_from_bytes(m.data, policy=email.policy.compat32)
            self.provider["email"][str(parsed.get("X-Herald-Idempotency-Key", "?"))] += 1
        self.smtp_seen = len(mails)


@dataclass
class Watch:
    """What the providers saw, stamped as it happened (polled every 50 ms, provider side)."""

    outage_at: float | None = None
    recovered_at: float | None = None
    first_smtp_at: float | None = None  # first message the SMTP server received after outage start
    first_ses_after_at: float | None = None  # first SendEmail forwarded to moto after recovery
    smtp_before: int = 0
    transitions: list[tuple[float, str]] = field(default_factory=list)  # (at, circuit)
    requests_seen: int = 0


async def _watch(pipeline: Pipeline, sink: SmtpSink, w: Watch, stop: asyncio.Event) -> None:
    key = f"{pipeline.prefix}:breaker:email:ses"
    client = redis_asyncio.Redis.from_url(pipeline.stack.redis_url)
    last: str | None = None
    try:
        while not stop.is_set():
            now = time.monotonic()
            if w.outage_at is not None and w.first_smtp_at is None and len(sink.messages()) > w.smtp_before:
                w.first_smtp_at = now
            if w.recovered_at is not None and w.first_ses_after_at is None:
                reqs = pipeline.proxy.requests
                fresh, w.requests_seen = reqs[w.requests_seen :], len(reqs)
                if any(r.fault is None and SEND in r.path for r in fresh):
                    w.first_ses_after_at = now
            with contextlib.suppress(OSError, ConnectionError):
                raw = await client.get(key)
                circuit = BreakerState.from_json(raw).circuit.value if raw else "absent"
                if circuit != last:
                    w.transitions.append((now, circuit))
                    last = circuit
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except TimeoutError:
                pass
    finally:
        await client.aclose()


async def _ses_outage(run: ChaosRun, w: Watch, sink: SmtpSink, seconds: float) -> None:
    w.smtp_before = len(sink.messages())
    run.pipeline.proxy.inject(SES_5XX, times=10**9, match=SEND)
    w.outage_at = time.monotonic()
    run.say(f"SES answers 503 ServiceUnavailable for {seconds:.0f}s")
    await asyncio.sleep(seconds)
    run.pipeline.proxy.clear()  # also forgets the recorded requests: the watcher reads from 0 again
    w.requests_seen = 0
    w.recovered_at = time.monotonic()
    run.say("SES healthy")


def _restart(pipeline: Pipeline, name: str, extra: dict[str, str]) -> None:
    """Stop ``name`` gracefully (SIGTERM: commits what it finished) and start it with ``extra`` env."""
    proc = pipeline.procs[name]
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    port = free_port()
    env = {**pipeline.env(name), **extra, "HERALD_METRICS_PORT": str(port)}
    pipeline.procs[name] = spawn_herald(PROCESSES[name], env=env, log=pipeline.root / f"{name}.log")
    pipeline.ports[name] = port
    pipeline.started_at[name] = time.monotonic()


@contextlib.asynccontextmanager
async def email_failover(pipeline: Pipeline, sink: SmtpSink) -> AsyncIterator[None]:
    """The email processes with SES then SMTP for the test; as the rest of the suite has them after."""
    extra = {
        **sink.env(),
        "HERALD_PROVIDERS__EMAIL": json.dumps(["ses", "smtp"]),
        "HERALD_SMTP__MAX_SEND_RATE": "1000",
    }
    for name in EMAIL_PROCESSES:
        _restart(pipeline, name, extra)
    await pipeline.wait_ready()
    try:
        yield
    finally:
        for name in EMAIL_PROCESSES:
            _restart(pipeline, name, {})
        await pipeline.wait_ready()


@contextlib.contextmanager
def smtp_server() -> Iterator[SmtpSink]:
    with SmtpSink(security="none") as sink:
        yield sink


def _providers(ledger: Ledger, run: ChaosRun) -> dict[str, int]:
    """Which provider Herald says sent each email of this run (outcomes' ``provider``)."""
    counts: dict[str, int] = {}
    for outs in ledger.by_event.values():
        for o in outs:
            if o.user_id in run.user_ids and o.status is OutcomeStatus.SENT and str(o.channel) == "email":
                counts[o.provider or "?"] = counts.get(o.provider or "?", 0) + 1
    return counts


def _log_offsets(pipeline: Pipeline) -> dict[str, int]:
    return {n: (pipeline.root / f"{n}.log").stat().st_size for n in EMAIL_PROCESSES}


def _breaker_log(pipeline: Pipeline, offsets: dict[str, int]) -> list[str]:
    """The SES breaker's transitions as each email process logged them since ``offsets``."""
    lines = []
    for name, offset in offsets.items():
        with (pipeline.root / f"{name}.log").open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        lines += [
            f"{name}: {ln.split('breaker ', 1)[1]}" for ln in text.splitlines() if "breaker email/ses:" in ln
        ]
    return lines


def _since(at: float | None, origin: float | None) -> str:
    return "never" if at is None or origin is None else f"{at - origin:.2f}"


async def test_ses_outage_fails_over_to_smtp_and_back(
    pipeline: Pipeline, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    outage_s = outage_seconds(chaos_knobs)
    stream_s = BEFORE_S + outage_s + AFTER_S
    events = max(300, int(chaos_knobs.events * stream_s / 200))  # ~10/s in make test, ~50/s in make chaos
    pipeline.ensure_running()
    run = new_run(pipeline, users=60, events=events, seed=30)
    await pipeline.seed(run.users)
    w, stop = Watch(), asyncio.Event()
    offsets = _log_offsets(pipeline)
    with smtp_server() as sink:
        ledger = FailoverLedger(pipeline, sink)
        try:
            async with email_failover(pipeline, sink):
                watcher = asyncio.create_task(_watch(pipeline, sink, w, stop))
                started = time.monotonic()
                try:
                    at = int(events * BEFORE_S / stream_s)
                    await run.stream(stream_s, {at: lambda: _ses_outage(run, w, sink, outage_s)})
                    acc = await run.drain(ledger, timeout_s=180)
                finally:
                    stop.set()
                    await watcher
                elapsed = time.monotonic() - started
                providers = _providers(ledger, run)
        finally:
            await ledger.close()
    logged = _breaker_log(pipeline, offsets)
    lost = len(acc.missing) + len(acc.wrong) + len(acc.orphans)
    facts = {
        "events": len(run.events),
        "SES outage (503)": f"{outage_s:.0f}s",
        "outage -> first SMTP (s)": _since(w.first_smtp_at, w.outage_at),
        "recovery -> first SES (s)": _since(w.first_ses_after_at, w.recovered_at),
        "breaker ses": " -> ".join(
            f"{c}@{_since(t, w.outage_at)}" for t, c in w.transitions
        ),  # seconds from outage start
        "emails sent by provider": providers,
        "lost (missing/wrong/orphans)": lost,
        "email duplicates": acc.duplicates["email"],
        "wall time (s)": f"{elapsed:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("SES outage, failover to SMTP", acc, facts))
        print("\n".join(run.log))
        print("\n".join(logged))
    assert acc.complete, summary("SES outage, failover to SMTP", acc, facts)
    assert acc.duplicates["email"] == 0  # a 503 is a refusal: no second provider may repeat a send
    assert w.outage_at is not None and w.recovered_at is not None
    # SMTP took the mail within seconds of the outage (the first refusals fail over at once).
    assert w.first_smtp_at is not None and w.first_smtp_at - w.outage_at < 5.0, facts
    # The breaker opened during the outage and, after recovery, closed again through half-open
    # (Redis polled every 50 ms may miss a short half-open: the processes' own logs do not).
    circuits = [c for t, c in w.transitions if t >= w.outage_at]
    assert "open" in circuits and circuits[-1] == "closed", facts
    assert any("closed -> open" in ln for ln in logged), logged
    assert any("half_open -> closed" in ln for ln in logged), logged
    # SES took traffic again: within the breaker's open_s (15 s) plus a margin of the recovery.
    assert w.first_ses_after_at is not None and w.first_ses_after_at - w.recovered_at < 20.0, facts
    assert providers.get("smtp", 0) > 0 and providers.get("ses", 0) > 0, providers
