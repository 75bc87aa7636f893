"""What the workflow executor shares: the routing table in use, the decision config, stores, clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from consumers.classifier.decide import DecideConfig
from consumers.classifier.lookup import ProfileCache, fetch_profiles
from consumers.classifier.profile import Profile
from consumers.classifier.routing import Route, RoutingTable, lane_for
from consumers.infra.clock import Clock
from consumers.infra.keys import derived_key, outcome_id
from consumers.runtime.handling import Output
from consumers.scheduler.store import Scheduler, Timer
from consumers.workflow.pinned import dump_pin
from schemas.models import DeliveryOutcome, DomainEvent, Lane, OutcomeStatus, Tier

__all__ = [
    "KIND_DIGEST_SEND",
    "KIND_STEP",
    "WorkflowContext",
    "start_timer",
    "step_timer",
    "with_cancel_key",
    "workflow_outcome",
]

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
    """Step 0 of a workflow, armed by the classifier: carries the event, the route's match and a
    copy of the route as it is now (the run is pinned to it, :mod:`consumers.workflow.pinned`)."""
    timer = step_timer(notification_id, 0, due_at, cancel_key)
    data = {**timer.data, "route": route.match, "pinned": dump_pin(route)}
    return Timer(timer.key, timer.kind, due_at, payload=event_bytes, data=data)


def workflow_outcome(
    nid: str,
    event: DomainEvent,
    *,
    tier: Tier,
    step: int,
    status: OutcomeStatus,
    reason: str,
    detail: str,
    now: datetime,
    lane: Lane | None = None,
) -> DeliveryOutcome:
    """An outcome a workflow step decides (no message of its own): keyed by (notification, step, reason)."""
    key = derived_key(nid, f"workflow:{step}:{reason}")
    return DeliveryOutcome(
        outcome_id=outcome_id(key, status.value),
        notification_id=nid,
        event_id=event.event_id,
        event_type=event.type,
        user_id=event.user_id,
        tier=tier,
        status=status,
        occurred_at=event.occurred_at,
        recorded_at=now,
        lane=lane or lane_for(tier),
        reason=reason,
        detail=detail,
        idempotency_key=key,
    )
