"""The executor's side of the tier presets: what follows a preset route's first send.

A preset's first send is made by the classifier at once; its outcome enters the workflow here,
at the step after the preset's ``wait``: the notification's state row (``herald_workflows``,
route ``preset:<tier>``, the sent message as its payload) stands at that step and the step's
timer is armed at the end of the wait. When the timer fires, :func:`fire_preset_step` runs the
step once (the row must still be active and at that step) and logs it in
``herald_workflow_runs`` like every other step:

* high, ``escalate``: :func:`enter_escalation` on the push's outcome; the row waits for a
  ``delivered`` receipt (any receipt ends it, :func:`consumers.workflow.executor.workflow_receipt`),
  and a push that cannot be sent escalates at once (a second timer, due now). The step's body is
  :func:`consumers.fallback.escalation.escalate` (consent, one email per push). One state row per
  notification: two unconfirmed pushes (two devices) escalate to one email.
* medium, ``digest``: :func:`enter_digest` on the in-app item's outcome; "until read" is the
  inbox row's read state when the wait ends (the item's own receipt, not the push's), and the
  step's body is :func:`consumers.fallback.digest.join_user_digest`: the item joins the user's
  digest, sent by the fallback's digest timer (one per tenant, user and window, across routes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.digest import join_user_digest
from consumers.fallback.escalation import PUSH_TIMEOUT, escalate, has_receipt
from consumers.infra.keys import derived_key
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from consumers.workflow.context import KIND_STEP, step_timer
from consumers.workflow.executor import ACTIVE, store_state
from consumers.workflow.presets import AfterSend
from schemas.models import ChannelMessage, Tier

__all__ = [
    "PRESET_ROUTE",
    "enter_digest",
    "enter_escalation",
    "fire_preset_step",
    "is_preset",
    "preset_timer",
]

log = logging.getLogger(__name__)
PRESET_ROUTE = "preset:"


def is_preset(route: str) -> bool:
    """A state row of a preset workflow (its route column is ``preset:<tier>``, not a route's match)."""
    return route.startswith(PRESET_ROUTE)


def preset_timer(message: ChannelMessage, after: AfterSend, due_at: datetime, reason: str) -> Timer:
    """The step's timer: at the wait's end, or (a failed push) a second one due at once. It names
    the user, so erasing a recipient finds it."""
    timer = step_timer(message.notification_id, after.step, due_at, None)
    key = timer.key if reason == PUSH_TIMEOUT else derived_key(timer.key, "now")
    return Timer(key, KIND_STEP, due_at, data={**timer.data, "reason": reason, "user_id": message.user_id})


_ENTER = """
INSERT INTO herald_workflows
    (notification_id, event_id, user_id, route, step, state, wait_for, event, created_at, updated_at, tenant)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
ON CONFLICT (notification_id) DO UPDATE SET state = 'running', wait_for = NULL, updated_at = $9
    WHERE $6 = 'running' AND herald_workflows.state IN ('running', 'waiting')
      AND herald_workflows.route = EXCLUDED.route
"""


async def _enter(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    message: ChannelMessage,
    after: AfterSend,
    *,
    state: tuple[str, str | None],
    due: datetime,
    reason: str,
) -> bool:
    await conn.execute(
        _ENTER,
        message.notification_id,
        message.event_id,
        message.user_id,
        f"{PRESET_ROUTE}{message.tier.value}",
        after.step,
        state[0],
        state[1],
        ctx.codec.encode(message),
        ctx.clock.now(),
        message.tenant or "",
    )
    return await ctx.scheduler.arm([preset_timer(message, after, due, reason)], conn) == 1


async def enter_escalation(
    ctx: FallbackContext, conn: asyncpg.Connection, push: ChannelMessage, after: AfterSend, *, reason: str
) -> bool:
    """The push was sent (``push_timeout``: wait for a receipt) or failed (escalate now)."""
    now = ctx.clock.now()
    if reason != PUSH_TIMEOUT:
        return await _enter(ctx, conn, push, after, state=("running", None), due=now, reason=reason)
    if await has_receipt(conn, push.notification_id):
        return False  # the receipt overtook the push's own outcome: nothing to wait for
    due = now + timedelta(seconds=after.wait_s)
    return await _enter(ctx, conn, push, after, state=("waiting", "delivered"), due=due, reason=reason)


async def enter_digest(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    item: ChannelMessage,
    after: AfterSend,
    *,
    sent_at: datetime,
) -> bool:
    """The in-app item was stored at ``sent_at``: look at it again when the wait ends."""
    due = sent_at + timedelta(seconds=after.wait_s)
    return await _enter(ctx, conn, item, after, state=("running", None), due=due, reason="unread")


async def _escalate(
    ctx: FallbackContext, conn: asyncpg.Connection, timer: Timer, push: ChannelMessage, step: int
) -> Sequence[Output]:
    nid, now = push.notification_id, ctx.clock.now()
    reason = str(timer.data.get("reason", PUSH_TIMEOUT))
    # A receipt committed after the poller locked this timer (its cancel missed) is checked here.
    if reason == PUSH_TIMEOUT and await has_receipt(conn, nid):
        await store_state(
            conn, nid, step + 1, "done", wait_for=None, now=now, log=[(step, "escalate", "receipt")]
        )
        return []
    done = await escalate(ctx, conn, push, reason)
    if done.held_until is not None:  # quiet hours: the same step when they end (a new key per hold)
        until = done.held_until
        held = Timer(f"{timer.key}:held:{until.isoformat()}", KIND_STEP, until, data=timer.data)
        await ctx.scheduler.arm([held], conn)
        waiting = reason == PUSH_TIMEOUT  # a receipt meanwhile still ends it (see workflow_receipt)
        state, wait_for = ("waiting", "delivered") if waiting else ("running", None)
        await store_state(conn, nid, step, state, wait_for=wait_for, now=now)
        return []
    await store_state(
        conn, nid, step + 1, "done", wait_for=None, now=now, log=[(step, "escalate", done.result)]
    )
    return done.outputs


async def _digest(ctx: FallbackContext, conn: asyncpg.Connection, item: ChannelMessage, step: int) -> None:
    joined = await join_user_digest(
        ctx,
        conn,
        idempotency_key=item.idempotency_key,
        notification_id=item.notification_id,
        event_id=item.event_id,
        event_type=item.event_type,
    )
    result = "joined" if joined else "read"
    await store_state(
        conn,
        item.notification_id,
        step + 1,
        "done",
        wait_for=None,
        now=ctx.clock.now(),
        log=[(step, "digest", result)],
    )


async def fire_preset_step(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due: run the preset's step once, unless a receipt ended it, it already ran or it was cancelled."""
    nid = str(timer.data["notification_id"])
    step = int(timer.data["step"])
    row = await conn.fetchrow(
        "SELECT step, state, event FROM herald_workflows WHERE notification_id = $1 FOR UPDATE", nid
    )
    if row is None or row["state"] not in ACTIVE or row["step"] != step:
        return []
    message = ctx.codec.decode(row["event"], ChannelMessage)
    if message.tier is Tier.MEDIUM:
        await _digest(ctx, conn, message, step)
        return []
    return await _escalate(ctx, conn, timer, message, step)
