"""What the workflow executor shares: the routing table in use, the decision config, stores, clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from consumers.classifier.decide import DecideConfig
from consumers.classifier.lookup import ProfileCache, fetch_profiles
from consumers.classifier.profile import Profile
from consumers.classifier.routing import Route, RoutingTable
from consumers.infra.clock import Clock
from consumers.infra.keys import derived_key
from consumers.runtime.handling import Output
from consumers.scheduler.store import Scheduler, Timer
from schemas.models import DeliveryOutcome

__all__ = ["KIND_DIGEST_SEND", "KIND_STEP", "WorkflowContext", "start_timer", "step_timer", "with_cancel_key"]

KIND_STEP = "workflow_step"
KIND_DIGEST_SEND = "workflow_digest"


@dataclass(slots=True)
class WorkflowContext:
    table: RoutingTable  # swapped on SIGHUP by the process (see consumers.classifier.reload)
    decide: DecideConfig
    pool: asyncpg.Pool
    scheduler: Scheduler
    clock: Clock
    profiles: ProfileCache | None = None  # the classifier's TTL cache; None: a fresh lookup per step

    def use_table(self, table: RoutingTable) -> None:
        self.table = table

    def route(self, match: str) -> Route | None:
        """The route a workflow was started under, by its match (None if the file dropped it)."""
        return next((r for r in self.table.routes if r.match == match), None)

    async def profile(self, user_id: str, tenant: str | None = None) -> Profile:
        """The user's profile in ``tenant`` (None: the default), as fresh as the classifier's (its
        cache TTL): a step hours after the event sees that day's preferences and addresses."""
        key = (tenant or "", user_id)
        if self.profiles is not None:
            return (await self.profiles.get_many([key]))[key]
        return (await fetch_profiles(self.pool, [key])).get(key) or Profile(user_id, tenant=key[0])

    def outcome_output(self, outcome: DeliveryOutcome) -> Output:
        return Output(
            self.decide.topics.outcomes, self.decide.codec.encode(outcome), outcome.notification_id.encode()
        )


def step_timer(notification_id: str, step: int, due_at: datetime, cancel_key: str | None) -> Timer:
    """The timer that runs ``step`` of a workflow: one per (notification, step), whoever arms it."""
    data: dict[str, Any] = {"notification_id": notification_id, "step": step}
    if cancel_key:
        data["cancel_key"] = cancel_key
    return Timer(
        key=derived_key(notification_id, f"workflow:{step}"), kind=KIND_STEP, due_at=due_at, data=data
    )


def with_cancel_key(timers: list[Timer], notification_id: str, cancel_key: str | None) -> list[Timer]:
    """Tag timers (deferred sends) so a herald.cancel finds them."""
    if not cancel_key:
        return timers
    return [
        Timer(
            t.key,
            t.kind,
            t.due_at,
            t.topic,
            t.msg_key,
            t.payload,
            {**t.data, "cancel_key": cancel_key, "notification_id": notification_id},
        )
        for t in timers
    ]


def start_timer(
    notification_id: str, route: Route, event_bytes: bytes, due_at: datetime, cancel_key: str | None
) -> Timer:
    """Step 0 of a workflow, armed by the classifier: carries the event and the route's match."""
    timer = step_timer(notification_id, 0, due_at, cancel_key)
    data = {**timer.data, "route": route.match}
    return Timer(timer.key, timer.kind, due_at, payload=event_bytes, data=data)
