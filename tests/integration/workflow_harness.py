"""The classifier and the workflow executor fed directly on a manual clock, against the real stack."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from consumers.classifier.handler import Classifier
from consumers.classifier.process import build_classifier
from consumers.fallback.context import FallbackContext
from consumers.fallback.handler import FallbackHandler, Signal
from consumers.infra.clock import ManualClock
from consumers.infra.resources import Resources
from consumers.infra.settings import ClassifierSettings, HeraldSettings
from consumers.runtime.handling import DeadLetter, Incoming, Output
from consumers.runtime.kafka import create_topics
from consumers.scheduler.store import Scheduler, TimerPoller
from consumers.workflow.process import fire_handlers, workflow_context
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, DomainEvent, Lane, Receipt
from tests.conftest import make_settings
from tests.integration.fallback_harness import past_clock
from tests.kafka_helpers import read_all

__all__ = ["WorkflowHarness", "running_workflows"]

CODEC = default_codec()


class WorkflowHarness:
    def __init__(self, settings: HeraldSettings, res: Resources, clock: ManualClock) -> None:
        self.settings = settings
        self.res = res
        self.clock = clock
        self.topics = res.topics
        self._offset = itertools.count()
        self._events_seen = 0

    async def start(self) -> None:
        await create_topics(
            self.settings,
            [self.topics.events, self.topics.outcomes, self.topics.receipts, *self.topics.channel_topics()],
        )
        self.pool: asyncpg.Pool = await self.res.pool()
        self.producer = await self.res.producer()
        self.classifier: Classifier = await build_classifier(self.res)
        self.scheduler = Scheduler(self.pool, self.clock, namespace=self.settings.topic_prefix)
        self.wf, _ = await workflow_context(self.res, self.scheduler, CODEC)
        ctx = FallbackContext(
            scheduler=self.scheduler,
            topics=self.topics,
            codec=CODEC,
            settings=self.settings.fallback,
            clock=self.clock,
        )
        self.fallback = FallbackHandler(ctx, self.pool, rand=lambda: 0.5, workflows=self.wf)
        self.poller = TimerPoller(
            self.scheduler, self.producer, self.settings.scheduler, fire_handlers(self.wf)
        )

    async def _produce(self, outputs: list[Output]) -> None:
        futures = [await self.producer.send(o.topic, o.value, key=o.key) for o in outputs]
        for f in futures:
            await f

    async def emit(self, *events: DomainEvent) -> list[Output]:
        """Classify events as the runner would, and produce what comes out."""
        batch = [Incoming("t", 0, next(self._offset), None, e, (), 0) for e in events]
        outputs: list[Output] = []
        for result in await self.classifier.handle(batch):
            assert not isinstance(result, DeadLetter), result
            outputs += result
        await self._produce(outputs)
        return outputs

    async def receipt(self, receipt: Receipt) -> None:
        batch: list[Incoming[Signal]] = [Incoming("t", 0, next(self._offset), None, receipt, (), 0)]
        await self.fallback.handle(batch)

    async def advance(self, seconds: float) -> int:
        """Move the clock, release due timers, and classify any scheduled event they put back."""
        self.clock.advance(seconds)
        total = 0
        while (n := await self.poller.release_due()) > 0:
            total += n
            records = await read_all(self.settings, self.topics.events)
            fresh = records[self._events_seen :]
            self._events_seen = len(records)
            if fresh:
                await self.emit(*(CODEC.decode(r.value, DomainEvent) for r in fresh))
        return total

    async def messages(self, channel: Channel, lane: Lane = Lane.PRIORITY) -> list[ChannelMessage]:
        topic = self.topics.channel(channel, lane)
        return [CODEC.decode(r.value, ChannelMessage) for r in await read_all(self.settings, topic)]

    async def outcomes(self) -> list[DeliveryOutcome]:
        return [
            CODEC.decode(r.value, DeliveryOutcome)
            for r in await read_all(self.settings, self.topics.outcomes)
        ]

    async def add_user(
        self, email: str | None = None, phone: str | None = None, *, tenant: str = "", user: str | None = None
    ) -> str:
        """A recipient in ``tenant`` ('' = the default); ``user`` names an id (another tenant's too)."""
        user = user or f"u-{uuid.uuid4().hex[:12]}"
        await self.pool.execute(
            "INSERT INTO herald_recipients (user_id, email, phone, tenant) VALUES ($1, $2, $3, $4)",
            user,
            email,
            phone,
            tenant,
        )
        return user

    async def runs(self, nid: str) -> list[tuple[int, str, str]]:
        rows = await self.pool.fetch(
            "SELECT step, kind, result FROM herald_workflow_runs WHERE notification_id = $1 ORDER BY step",
            nid,
        )
        return [(r["step"], r["kind"], r["result"]) for r in rows]

    async def state(self, nid: str) -> str | None:
        value = await self.pool.fetchval("SELECT state FROM herald_workflows WHERE notification_id = $1", nid)
        return None if value is None else str(value)

    def event(self, event_type: str, user: str, **kw: Any) -> DomainEvent:
        return DomainEvent(
            event_id=str(uuid.uuid4()), type=event_type, occurred_at=self.clock.now(), user_id=user, **kw
        )

    def at(self, seconds: float) -> datetime:
        return self.clock.now() + timedelta(seconds=seconds)


@asynccontextmanager
async def running_workflows(
    stack: Any, tmp_path: Path, routes: list[dict[str, Any]]
) -> AsyncIterator[WorkflowHarness]:
    """A harness whose routing file is ``routes`` (plus the shipped ones)."""
    shipped = yaml.safe_load(ClassifierSettings().routing_file.read_text())["routes"]
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump({"routes": [*routes, *shipped]}))
    settings = make_settings(stack, classifier=ClassifierSettings(routing_file=path))
    clock = past_clock()
    res = Resources(settings, clock=clock)
    harness = WorkflowHarness(settings, res, clock)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.pool.execute(
            "UPDATE herald_timers SET state = 'cancelled' WHERE state = 'pending' AND due_at < $1",
            datetime(1996, 1, 1, tzinfo=clock.now().tzinfo),
        )
        await res.close()
