"""What the classifier hands to workflows instead of sending at once.

Per event, before the usual planning:

* ``herald.cancel`` with a ``cancel_key`` → the cancellation (``consumers.workflow.cancel``).
* an event whose ``cancel_key`` was already cancelled → a ``cancelled`` outcome, nothing sent.
* ``send_at`` in the future → held by the scheduler: a timer that puts the event back on
  herald.events at ``send_at`` (classified again then, with that day's preferences), and a
  ``deferred`` outcome with reason ``scheduled``.
* a route with its own ``steps`` → step 0 of its workflow, armed at once.

Everything else is planned as before; those that carry a ``cancel_key`` are indexed so a later
cancel can reach their retries and their messages waiting in a lane.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from redis.exceptions import RedisError

from consumers.classifier.routing import Route, RoutingTable
from consumers.infra import keys
from consumers.runtime.handling import DeadLetter, Output, Result
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Timer
from consumers.workflow.cancel import CANCEL_EVENT_TYPE, Canceller, scoped_cancel_key
from consumers.workflow.context import start_timer
from schemas.codec import Codec
from schemas.models import DeliveryOutcome, DomainEvent, OutcomeStatus

__all__ = ["Intake", "Taken"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Taken:
    """The events intake handled (index → result) and the timers to arm with the batch."""

    results: dict[int, Result] = field(default_factory=dict)
    timers: list[Timer] = field(default_factory=list)
    index: list[tuple[str, str]] = field(default_factory=list)  # (cancel_key, notification_id)


@dataclass(frozen=True, slots=True)
class Intake:
    canceller: Canceller
    topics: Topics
    codec: Codec

    def _out(self, outcome: DeliveryOutcome) -> Output:
        return Output(self.topics.outcomes, self.codec.encode(outcome), outcome.notification_id.encode())

    def _scheduled(self, event: DomainEvent, route: Route, nid: str, now: datetime) -> tuple[Timer, Output]:
        assert event.send_at is not None
        # The tenant: the record key names only the user, and erasure goes by (tenant, user).
        data = {"notification_id": nid, "event_type": event.type, "tenant": event.tenant or ""}
        if event.cancel_key:
            data["cancel_key"] = scoped_cancel_key(event.cancel_key, event.tenant)
        timer = Timer(
            key=keys.derived_key(nid, "scheduled"),
            kind="publish",
            due_at=event.send_at,
            topic=self.topics.events,
            msg_key=event.user_id.encode(),
            payload=self.codec.encode(event),
            data=data,
        )
        outcome = DeliveryOutcome(
            outcome_id=keys.outcome_id(timer.key, "deferred:scheduled"),
            notification_id=nid,
            event_id=event.event_id,
            event_type=event.type,
            user_id=event.user_id,
            tier=route.tier,
            status=OutcomeStatus.DEFERRED,
            occurred_at=event.occurred_at,
            recorded_at=now,
            lane=route.lane,
            reason="scheduled",
            detail=f"scheduled send at {event.send_at.isoformat()}",
            idempotency_key=timer.key,
            not_before=event.send_at,
        )
        return timer, self._out(outcome)

    async def take(
        self, events: Sequence[tuple[int, DomainEvent]], table: RoutingTable, now: datetime
    ) -> Taken:
        """Handle the events that are cancels, cancelled, scheduled or workflows; the rest are left."""
        taken = Taken()
        scoped = [scoped_cancel_key(e.cancel_key, e.tenant) for _, e in events]
        cancelled = await self._cancelled(sorted({k for k in scoped if k}))
        for (i, event), cancel_key in zip(events, scoped, strict=True):
            if event.type == CANCEL_EVENT_TYPE:
                taken.results[i] = await self._cancel(event, now)
                continue
            route = table.match(event.type)
            if route is None:
                continue  # the classifier dead-letters it
            scheduled = event.send_at is not None and event.send_at > now
            if not (event.cancel_key or scheduled or route.custom):
                continue  # the usual case: planned as before, no notification id needed here
            nid = keys.notification_id(event.event_id, event.user_id, event.tenant)
            if event.cancel_key and cancel_key in cancelled:
                outcome = self.canceller.for_event(event, nid, event.cancel_key, now)
                taken.results[i] = [self._out(outcome)]
            elif scheduled:
                timer, output = self._scheduled(event, route, nid, now)
                taken.timers.append(timer)
                taken.results[i] = [output]
            elif route.custom:
                taken.timers.append(start_timer(nid, route, self.codec.encode(event), now, cancel_key))
                taken.results[i] = []
            elif cancel_key:
                taken.index.append((cancel_key, nid))
        return taken

    async def _cancelled(self, cancel_keys: list[str]) -> set[str]:
        try:
            return await self.canceller.cancelled(cancel_keys)
        except (RedisError, OSError) as exc:
            # Fails open like the rate limiter: pending work was cancelled in PostgreSQL already.
            log.warning("cancellation set (Redis) unavailable: %s; events are not checked against it", exc)
            return set()

    async def _cancel(self, event: DomainEvent, now: datetime) -> Result:
        if not event.cancel_key:
            return DeadLetter(
                "invalid", "MissingCancelKey", f"{CANCEL_EVENT_TYPE} event without a cancel_key"
            )
        return [self._out(o) for o in await self.canceller.cancel(event.cancel_key, now, event.tenant)]
