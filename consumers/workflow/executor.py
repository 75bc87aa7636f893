"""Runs a workflow's steps on the durable scheduler: one state row per notification (event, user).

A ``workflow_step`` timer names (notification, step). Firing it locks the state row; the step
runs only if the row is still active and at that step, so a re-fired timer, a replayed
classification or a second poller finds the step done and does nothing. Steps that do not
wait (throttle, send, escalate, digest) run on in the same transaction; a wait or a delay
arms the next step's timer and ends it. ``herald_workflow_runs`` logs one row per step run.

A run runs the steps it started with (``herald_workflows.pinned``, :mod:`consumers.workflow.pinned`),
not the route's after a reload; it takes its tier, category, template and lane from the route in
use, or from its copy when the table in use lacks the route (not reloaded yet, or renamed). A
run ends ``cancelled`` (reason ``route_changed``) when its event type now goes to a tier preset
whose fallback would act on its sends, or has no copy and its route is gone or a preset
(:func:`~consumers.workflow.pinned.run_route`); a copy that cannot be read, or shorter than the
step the row stands at, ends it ``cancelled`` too (reason ``pin_invalid``). A row from before migration 270 has no copy and runs
the route's steps by index, as it always did.

The poller produces what a fire returns and commits only after the broker's acks: a crash in
between runs the step again with the same idempotency keys (the channel consumer's delivery ledger).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from consumers.classifier.routing import Route
from consumers.fallback.decisions import digest_window
from consumers.runtime.handling import Output
from consumers.scheduler.store import Scheduler, Timer
from consumers.workflow.cancel import scoped_cancel_key
from consumers.workflow.context import WorkflowContext, step_timer, with_cancel_key, workflow_outcome
from consumers.workflow.digest import join_digest
from consumers.workflow.pinned import Pin, dump_pin, load_pin, run_route
from consumers.workflow.sending import send_step
from consumers.workflow.steps import (
    Delay,
    Digest,
    Escalate,
    Overflow,
    Send,
    SendMode,
    Step,
    StepError,
    Throttle,
    Wait,
    WaitFor,
)
from schemas.models import DeliveryOutcome, DomainEvent, OutcomeStatus, Tier

__all__ = ["ACTIVE", "fire_step", "receipt_satisfies", "store_state", "workflow_receipt"]

log = logging.getLogger(__name__)
ACTIVE = ("running", "waiting")


@dataclass(slots=True)
class Run:
    """A workflow being advanced inside one fire."""

    nid: str
    event: DomainEvent
    route: Route
    steps: tuple[Step, ...]  # the run's own (pinned at start), or the route's for a row from before 270
    step: int
    first_send: int  # index of the first send step: it keeps the classifier's keys
    outputs: list[Output] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    log: list[tuple[int, str, str]] = field(default_factory=list)  # (step, kind, result) run in this fire


@dataclass(slots=True)
class After:
    """What comes after a step: go on (to ``jump`` if set), sleep until ``due``, or stop."""

    result: str
    then: str = "continue"  # continue | sleep | stop
    due: datetime | None = None
    state: str = "running"
    wait_for: WaitFor | None = None
    jump: int | None = None


def receipt_satisfies(wait_for: str | None, status: str) -> bool:
    """A read receipt satisfies both waits; delivered and opened only "until delivered"."""
    return status == "read" or (wait_for == WaitFor.DELIVERED.value and status in ("delivered", "opened"))


async def _receipts(conn: asyncpg.Connection, nid: str) -> list[str]:
    rows = await conn.fetch("SELECT status FROM herald_receipts WHERE notification_id = $1", nid)
    return [r["status"] for r in rows]


async def workflow_receipt(
    scheduler: Scheduler, conn: asyncpg.Connection, nid: str, status: str, now: datetime
) -> bool:
    """A receipt arrived: a workflow waiting for it (a route's or a preset's) is done, and its
    timeout timer cancelled."""
    row = await conn.fetchrow(
        "SELECT step, wait_for FROM herald_workflows WHERE notification_id = $1 AND state = 'waiting' FOR UPDATE",
        nid,
    )
    if row is None or not receipt_satisfies(row["wait_for"], status):
        return False
    await conn.execute(
        "UPDATE herald_workflows SET state = 'done', updated_at = $2 WHERE notification_id = $1", nid, now
    )
    # A poller firing the timer waits for this row next: skip it (the fire finds the row done).
    await scheduler.cancel(step_timer(nid, row["step"], now, None).key, conn, unless_firing=True)
    return True


def _outcome(run: Run, status: OutcomeStatus, reason: str, detail: str, now: datetime) -> DeliveryOutcome:
    return workflow_outcome(
        run.nid,
        run.event,
        tier=run.route.tier,
        step=run.step,
        status=status,
        reason=reason,
        detail=detail,
        now=now,
        lane=run.route.lane,
    )


async def _send(ctx: WorkflowContext, run: Run, step: Send | Escalate, now: datetime) -> After:
    profile = await ctx.profile(run.event.user_id, run.event.tenant)
    is_send = isinstance(step, Send)
    sent = send_step(
        run.event,
        run.route,
        channels=step.channels,
        opt_in=step.opt_in if isinstance(step, Send) else (),
        mode=step.mode if isinstance(step, Send) else SendMode.ALL,
        step=run.step,
        first_send=is_send and run.step == run.first_send,
        profile=profile,
        now=now,
        cfg=ctx.decide,
        nid=run.nid,
    )
    run.outputs += sent.decision.outputs
    run.timers += with_cancel_key(
        sent.timers, run.nid, scoped_cancel_key(run.event.cancel_key, run.event.tenant)
    )
    return After(f"{step.kind}:{'+'.join(c.value for c in sent.sent) or 'nothing'}")


async def _throttle(
    ctx: WorkflowContext, conn: asyncpg.Connection, run: Run, step: Throttle, now: datetime
) -> After:
    # One allowance per (tenant, user, route, window): the same id in two tenants is two users.
    window = digest_window(now, step.per_s)
    admitted = await conn.fetchval(
        "INSERT INTO herald_workflow_throttle (tenant, user_id, route, window_start, admitted) "
        "VALUES ($5, $1, $2, $3, 1) ON CONFLICT (tenant, user_id, route, window_start) DO UPDATE "
        "SET admitted = herald_workflow_throttle.admitted + 1 WHERE herald_workflow_throttle.admitted < $4 "
        "RETURNING admitted",
        run.event.user_id,
        run.route.match,
        window,
        step.limit,
        run.event.tenant or "",
    )
    if admitted is not None:
        return After(f"throttle:admitted {admitted}/{step.limit}")
    if step.overflow is Overflow.DIGEST:
        return After("throttle:to digest", jump=len(run.steps) - 1)
    detail = f"over {step.limit} per {step.per_s:g}s for {run.route.match}"
    run.outputs.append(ctx.outcome_output(_outcome(run, OutcomeStatus.SUPPRESSED, "throttled", detail, now)))
    return After("throttle:dropped", then="stop", state="dropped")


async def _wait(conn: asyncpg.Connection, run: Run, step: Wait | Delay, now: datetime) -> After:
    if isinstance(step, Delay):
        return After("delay", then="sleep", due=now + timedelta(seconds=step.duration_s))
    due = now + timedelta(seconds=step.bound_s)
    if step.until is None:
        return After("wait", then="sleep", due=due)
    if any(receipt_satisfies(step.until.value, s) for s in await _receipts(conn, run.nid)):
        return After(f"wait:{step.until.value} already", then="stop", state="done")
    return After(f"wait:{step.until.value}", then="sleep", due=due, state="waiting", wait_for=step.until)


async def _one(ctx: WorkflowContext, conn: asyncpg.Connection, run: Run, step: Step, now: datetime) -> After:
    if isinstance(step, Send):
        return await _send(ctx, run, step, now)
    if isinstance(step, Escalate):
        if await _receipts(conn, run.nid):
            return After("escalate:not needed (receipt)", then="stop", state="done")
        return await _send(ctx, run, step, now)
    if isinstance(step, Throttle):
        return await _throttle(ctx, conn, run, step, now)
    if isinstance(step, Digest):
        await join_digest(ctx, conn, nid=run.nid, event=run.event, route=run.route, step=step, now=now)
        return After("digest:joined", then="stop", state="done")
    return await _wait(conn, run, step, now)


async def _advance(ctx: WorkflowContext, conn: asyncpg.Connection, run: Run, waiting: str | None) -> None:
    """Run steps from ``run.step`` until one waits or the workflow ends; record where it stands."""
    now = ctx.clock.now()
    steps = run.steps
    if waiting is not None and any(receipt_satisfies(waiting, s) for s in await _receipts(conn, run.nid)):
        await store_state(
            conn, run.nid, run.step, "done", wait_for=None, now=now
        )  # the receipt raced the timeout
        return
    state, wait_for = "done", None
    while run.step < len(steps):
        after = await _one(ctx, conn, run, steps[run.step], now)
        run.log.append((run.step, steps[run.step].kind, after.result))
        run.step = after.jump if after.jump is not None else run.step + 1
        if after.then == "sleep" and after.due is not None:
            state, wait_for = after.state, after.wait_for
            run.timers.append(
                step_timer(
                    run.nid, run.step, after.due, scoped_cancel_key(run.event.cancel_key, run.event.tenant)
                )
            )
            break
        if after.then == "stop":
            state = after.state
            break
    await store_state(
        conn, run.nid, run.step, state, wait_for=wait_for.value if wait_for else None, now=now, log=run.log
    )


_STORE = """
WITH ran AS (
    INSERT INTO herald_workflow_runs (notification_id, step, kind, result, ran_at)
    SELECT $1, s, k, r, $5 FROM unnest($6::int[], $7::text[], $8::text[]) AS t(s, k, r)
    ON CONFLICT DO NOTHING
)
UPDATE herald_workflows SET step = $2, state = $3, wait_for = $4, updated_at = $5 WHERE notification_id = $1
"""


async def store_state(
    conn: asyncpg.Connection,
    nid: str,
    step: int,
    state: str,
    *,
    wait_for: str | None,
    now: datetime,
    log: Sequence[tuple[int, str, str]] = (),
) -> None:
    """Where the workflow stands, and the steps this fire ran, in one statement."""
    await conn.execute(
        _STORE,
        nid,
        step,
        state,
        wait_for,
        now,
        [s for s, _, _ in log],
        [k for _, k, _ in log],
        [r for _, _, r in log],
    )


def _start_pin(ctx: WorkflowContext, timer: Timer) -> str | None:
    """The copy a run starts with: the classifier's (in the timer), or for a step-0 timer armed by
    a version before 270, the route's now."""
    if "pinned" in timer.data:
        return str(timer.data["pinned"])
    route = ctx.route(str(timer.data["route"]))
    return dump_pin(route) if route is not None and route.custom else None


async def _lock_or_start(
    ctx: WorkflowContext, conn: asyncpg.Connection, timer: Timer
) -> asyncpg.Record | None:
    nid = str(timer.data["notification_id"])
    if timer.payload is not None and int(timer.data["step"]) == 0:
        event = ctx.decide.codec.decode(timer.payload, DomainEvent)
        now = ctx.clock.now()
        await conn.execute(
            "INSERT INTO herald_workflows (notification_id, event_id, user_id, tenant, route, cancel_key, "
            "event, created_at, updated_at, pinned) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) "
            "ON CONFLICT DO NOTHING",
            nid,
            event.event_id,
            event.user_id,
            event.tenant or "",
            str(timer.data["route"]),
            scoped_cancel_key(event.cancel_key, event.tenant),
            timer.payload,
            now,
            _start_pin(ctx, timer),
        )
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT step, state, wait_for, route, event, pinned FROM herald_workflows "
        "WHERE notification_id = $1 FOR UPDATE",
        nid,
    )
    return row


async def _route_changed(
    ctx: WorkflowContext,
    conn: asyncpg.Connection,
    nid: str,
    event: DomainEvent,
    *,
    step: int,
    detail: str,
    reason: str = "route_changed",
) -> Sequence[Output]:
    """The run cannot go on under the routing file in use (or its copy cannot be read): a
    ``cancelled`` outcome (``reason``, seen by ``herald why``), and the row says so."""
    now = ctx.clock.now()
    now_route = ctx.table.match(event.type)
    tier = now_route.tier if now_route is not None else Tier.MEDIUM
    log.warning("workflow %s: %s; cancelled", nid, detail)
    outcome = workflow_outcome(
        nid,
        event,
        tier=tier,
        step=step,
        status=OutcomeStatus.CANCELLED,
        reason=reason,
        detail=detail,
        now=now,
    )
    await store_state(conn, nid, step, "cancelled", wait_for=None, now=now, log=[(step, "route", reason)])
    return [ctx.outcome_output(outcome)]


async def fire_step(ctx: WorkflowContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due: run the workflow's step named by the timer (and the ones after it that do not wait)."""
    row = await _lock_or_start(ctx, conn, timer)
    step = int(timer.data["step"])
    if row is None or row["state"] not in ACTIVE or row["step"] != step:
        return []  # already run, cancelled, dropped or satisfied: a replay does nothing
    nid = str(timer.data["notification_id"])
    event = ctx.decide.codec.decode(row["event"], DomainEvent)
    pin: Pin | None = None
    if row["pinned"] is not None:
        try:
            pin = load_pin(row["pinned"])
        except StepError as exc:
            detail = f"the run's copy of route {row['route']!r} cannot be read: {exc}"
            return await _route_changed(ctx, conn, nid, event, step=step, detail=detail, reason="pin_invalid")
    by_type = ctx.table.match(event.type)
    # The default tier's route is made up per type (named after it), in no routing file.
    default = by_type is not None and not by_type.custom and by_type.match == event.type
    default = default and ctx.route(event.type) is None
    route = run_route(row["route"], pin, ctx.route(row["route"]), by_type, default_tier=default)
    if isinstance(route, str):
        return await _route_changed(ctx, conn, nid, event, step=step, detail=route)
    steps = pin.steps if pin is not None else route.steps
    if pin is not None and step >= len(
        steps
    ):  # a copy shorter than where the row stands (rolled back, edited by hand)
        detail = f"the run stands at step {step} but its copy of route {row['route']!r} has {len(steps)}"
        return await _route_changed(ctx, conn, nid, event, step=step, detail=detail, reason="pin_invalid")
    # A row from before 270 runs the route's steps, validated at load: both have a step that sends.
    first_send = next(i for i, s in enumerate(steps) if isinstance(s, Send | Escalate | Digest))
    run = Run(nid, event, route, steps, step, first_send)
    await _advance(ctx, conn, run, row["wait_for"] if row["state"] == "waiting" else None)
    await ctx.scheduler.arm(run.timers, conn)
    return run.outputs
