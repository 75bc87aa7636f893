"""The chaos driver: stream events, kill processes, stop servers, then wait until all is accounted for.

Sizes come from the environment so one suite serves both runs: ``HERALD_CHAOS_EVENTS``
(default 2000: the run in ``make test``; ``make chaos`` sets 10000) and ``HERALD_CHAOS_SCALE``
(how long outages and provider storms last relative to the issue's figures; default 0.5 for
the small run, 1.0 from 10000 events up).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.emitter import Emitter, build_event
from tests.chaos.ledger import Account, Ledger
from tests.chaos.pipeline import PROCESSES, Pipeline
from tests.chaos.population import Expect, Planned, User, expectations

__all__ = ["ChaosRun", "Knobs", "knobs"]


@dataclass(frozen=True)
class Knobs:
    events: int
    scale: float
    rate_per_s: float = 50.0
    kill_every_s: float = 4.0

    @property
    def stream_s(self) -> float:
        return self.events / self.rate_per_s


def knobs() -> Knobs:
    events = int(os.environ.get("HERALD_CHAOS_EVENTS", "2000"))
    default_scale = "1.0" if events >= 10_000 else "0.5"
    return Knobs(events=events, scale=float(os.environ.get("HERALD_CHAOS_SCALE", default_scale)))


@dataclass
class ChaosRun:
    pipeline: Pipeline
    users: list[User]
    events: list[Planned]
    rnd: random.Random
    log: list[str] = field(default_factory=list)
    emitted: dict[str, float] = field(default_factory=dict)  # event id -> time.monotonic() when acked
    outages: list[tuple[str, float, float]] = field(default_factory=list)  # (service, down at, back at)
    exits: list[tuple[str, int, float, float]] = field(
        default_factory=list
    )  # (name, rc, started at, seen at)
    t0: float = field(default_factory=time.monotonic)
    spared: set[str] = field(default_factory=set)  # processes the killer leaves alone for now

    @property
    def user_ids(self) -> set[str]:
        return {u.user_id for u in self.users}

    def expects(self) -> list[Expect]:
        by_id = {u.user_id: u for u in self.users}
        return [x for e in self.events for x in expectations(e, by_id[e.user_id])]

    def markers(self) -> dict[str, str]:
        """SMS marker -> the SMS idempotency key of that event."""
        out: dict[str, str] = {}
        by_event = {x.event_id: x for x in self.expects() if x.channel.value == "sms" and x.want == "deliver"}
        for e in self.events:
            x = by_event.get(e.event_id)
            if x is not None:
                out[e.marker] = x.key
        return out

    def say(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:7.1f}s {text}")

    async def stream(
        self,
        duration_s: float,
        hooks: Mapping[int, Callable[[], Coroutine[Any, Any, None]]] | None = None,
        events: list[Planned] | None = None,
        in_flight: int = 1,
    ) -> None:
        """Emit every planned event, evenly over ``duration_s``; ``hooks[i]`` starts before event i
        and runs alongside the stream; returns when the events are out and every hook is done.

        ``in_flight`` > 1 keeps up to that many sends awaiting their ack at once, so the schedule
        holds when one ack takes longer than the gap between events (the S3-backed broker under
        load); order per user is kept (one producer, one partition per user)."""
        hooks = hooks or {}
        running: list[asyncio.Task[None]] = []
        start = time.monotonic()
        planned = self.events if events is None else events
        step = duration_s / max(1, len(planned))
        slots = asyncio.Semaphore(in_flight)
        sends: list[asyncio.Task[None]] = []
        async with Emitter(self.pipeline.stack.kafka, self.pipeline.topics.events) as emit:

            async def send(e: Planned) -> None:
                try:
                    await emit.emit_event(
                        build_event(
                            e.event_type, user_id=e.user_id, data=e.data, event_id=e.event_id, locale=e.locale
                        )
                    )
                    self.emitted[e.event_id] = time.monotonic()
                finally:
                    slots.release()

            for i, e in enumerate(planned):
                if i in hooks:
                    running.append(asyncio.create_task(hooks[i]()))
                delay = start + i * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                sends.append(asyncio.create_task(send(e)))
                if in_flight == 1:
                    await sends[-1]
            await asyncio.gather(*sends)
        self.say(f"streamed {len(planned)} events in {time.monotonic() - start:.1f}s")
        await asyncio.gather(*running)

    async def killer(self, every_s: float, stop: asyncio.Event) -> None:
        """SIGKILL a random Herald process every ``every_s`` seconds (jittered) and start it again at once.

        Random order, but every process is hit once before any is hit twice."""
        names: list[str] = []
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every_s * (0.5 + self.rnd.random()))
                return
            except TimeoutError:
                pass
            if not names:
                names = self.rnd.sample(list(PROCESSES), len(PROCESSES))
            eligible = [n for n in names if n not in self.spared]
            if not eligible:
                continue
            name = eligible[-1]
            names.remove(name)
            self.pipeline.kill(name)
            in_flight = await self.pipeline.count_in_flight(name)
            self.pipeline.start(name)
            counted = "unknown (Redis down)" if in_flight is None else str(in_flight)
            self.say(f"SIGKILL {name} ({counted} provider calls in flight), restarted")

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart a process that exited by itself, as Kubernetes would, and remember it."""
        while not stop.is_set():
            for name in self.pipeline.dead():
                rc = self.pipeline.procs[name].returncode
                self.exits.append((name, rc, self.pipeline.started_at[name], time.monotonic()))
                self.say(f"{name} exited by itself (rc {rc}): restarted")
                self.pipeline.start(name)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass

    def crashes(self, margin_s: float = 2.0) -> list[str]:
        """Exits of processes that were running when an outage began (not started during one)."""
        out = []
        for name, rc, started, seen in self.exits:
            during = any(down - margin_s <= started <= back + margin_s for _, down, back in self.outages)
            if not during:
                out.append(f"{name} rc={rc} started {started - self.t0:.1f}s exited by {seen - self.t0:.1f}s")
        return out

    async def outage(self, service: str, seconds: float) -> None:
        self.say(f"{service} stopped")
        down = time.monotonic()
        await asyncio.to_thread(self.pipeline.stack.stop_service, service)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.pipeline.stack.start_service, service)
        self.outages.append((service, down, time.monotonic()))
        self.say(f"{service} back after {seconds:.0f}s")
        if service == "postgres":
            await self.pipeline.reconnect()

    async def drain(
        self,
        ledger: Ledger,
        timeout_s: float,
        *,
        settle: Callable[[Account], bool] | None = None,
        extra: list[Expect] | None = None,
    ) -> Account:
        """Re-read everything until every expectation (the table's, plus ``extra``) holds, or the timeout."""
        deadline = time.monotonic() + timeout_s
        expects = self.expects() + (extra or [])
        markers = self.markers()
        while True:
            await ledger.refresh()
            ledger.sms_key_map(markers)
            acc = ledger.account(expects, self.user_ids)
            if (acc.complete and (settle is None or settle(acc))) or time.monotonic() > deadline:
                self.say(
                    f"drained: {sum(acc.ok.values())}/{acc.expected} accounted, {len(acc.missing)} missing, "
                    f"{len(acc.orphans)} orphans"
                )
                return acc
            await asyncio.sleep(2.0)
