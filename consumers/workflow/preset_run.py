"""The executor's side of the tier presets: what follows a preset route's first send.

A preset's first send is made by the classifier at once; its outcome enters the workflow here,
at the step after the preset's ``wait``: the notification's state row (``herald_workflows``,
route ``preset:<tier>``, the sent message as its payload) stands at that step and the step's
timer is armed at the end of the wait. When the timer fires, :func:`fire_preset_step` runs the
step once (the row must still be active and at that step) and logs it in
``herald_workflow_runs`` like every other step:

* high, ``escalate``: :func:`escalation_entry` on the push's outcome; the row waits for a
  ``delivered`` receipt (any receipt ends it, :func:`consumers.workflow.executor.workflow_receipt`),
  and a push that cannot be sent escalates at once (a second timer, due now). The step's body is
  :func:`consumers.fallback.escalation.escalate` (consent, one email per push). One state row per
  notification: two unconfirmed pushes (two devices) escalate to one email.
* medium, ``digest``: :func:`digest_entry` on the in-app item's outcome; "until read" is the
  inbox row's read state when the wait ends (the item's own receipt, not the push's), and the
  step's body is :func:`consumers.fallback.digest.join_user_digest`: the item joins the user's
  digest, sent by the fallback's digest timer (one per tenant, user and window, across routes).

This module fires one step at a time; the poller fires a poll's steps together through
:mod:`consumers.workflow.preset_batch`, with the same effects, and falls back to this one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.digest import join_user_digest
from consumers.fallback.escalation import PUSH_TIMEOUT, Escalated, escalate, has_receipt, received_among
from consumers.infra.keys import derived_key
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from consumers.workflow.context import KIND_STEP, step_timer
from consumers.workflow.executor import ACTIVE, store_state
from consumers.workflow.presets import AfterSend
from schemas.models import ChannelMessage, Tier

__all__ = [
    "PRESET_ROUTE",
    "Entry",
    "Stored",
    "after_escalation",
    "digest_entry",
    "enter_all",
    "escalate_step",
    "escalation",
    "escalation_entry",
    "fire_preset_step",
    "is_preset",
    "lock_state",
    "preset_timer",
    "receipt_ended",
    "rounds",
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
SELECT n, e, u, r, s, st, w, ev, $9::timestamptz, $9::timestamptz, t FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::bytea[], $10::text[]
) AS x(n, e, u, r, s, st, w, ev, t)
ON CONFLICT (notification_id) DO UPDATE SET state = 'running', wait_for = NULL, updated_at = $9
    WHERE EXCLUDED.state = 'running' AND herald_workflows.state IN ('running', 'waiting')
      AND herald_workflows.route = EXCLUDED.route
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A sent (or failed) message entering its preset's step after the wait: the state row it
    writes and the step's timer."""

    message: ChannelMessage
    after: AfterSend
    state: str  # running | waiting
    wait_for: str | None
    due: datetime
    reason: str


def escalation_entry(push: ChannelMessage, after: AfterSend, *, reason: str, now: datetime) -> Entry:
    """The push was sent (``push_timeout``: wait for a receipt) or failed (escalate now)."""
    if reason != PUSH_TIMEOUT:
        return Entry(push, after, "running", None, now, reason)
    return Entry(push, after, "waiting", "delivered", now + timedelta(seconds=after.wait_s), reason)


def digest_entry(item: ChannelMessage, after: AfterSend, *, sent_at: datetime) -> Entry:
    """The in-app item was stored at ``sent_at``: look at it again when the wait ends."""
    return Entry(item, after, "running", None, sent_at + timedelta(seconds=after.wait_s), "unread")


def rounds(entries: Sequence[Entry]) -> list[list[Entry]]:
    """The entries in rounds of one entry per notification, each notification's in their order:
    a multi-row upsert may not touch a row twice, and a notification's later entries see the
    state its earlier ones wrote (as one by one would). Each round in ``notification_id`` order: the
    upsert locks the rows already there in the order it meets them, and the poller's batch locks
    them in that order (:mod:`consumers.fallback.locking`). Pure."""
    out: list[list[Entry]] = []
    seen: dict[str, int] = {}
    for entry in entries:
        n = seen.get(entry.message.notification_id, 0)
        seen[entry.message.notification_id] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(entry)
    for batch in out:
        batch.sort(key=lambda e: e.message.notification_id)
    return out


async def enter_all(ctx: FallbackContext, conn: asyncpg.Connection, entries: Sequence[Entry]) -> None:
    """Enter a batch's entries: one look for the waiting ones a receipt overtook (nothing to wait
    for then), then the state rows and the timers in one statement each a round (:func:`rounds`:
    one round unless a notification has two entries). Only receipts write ``herald_receipts``
    and none come between the entries of one run of outcomes, so asking once is asking each in
    turn."""
    received = await received_among(
        conn, [e.message.notification_id for e in entries if e.reason == PUSH_TIMEOUT]
    )
    now = ctx.clock.now()
    for batch in rounds(
        [e for e in entries if e.reason != PUSH_TIMEOUT or e.message.notification_id not in received]
    ):
        m = [e.message for e in batch]
        await conn.execute(
            _ENTER,
            [x.notification_id for x in m],
            [x.event_id for x in m],
            [x.user_id for x in m],
            [f"{PRESET_ROUTE}{x.tier.value}" for x in m],
            [e.after.step for e in batch],
            [e.state for e in batch],
            [e.wait_for for e in batch],
            [ctx.codec.encode(x) for x in m],
            now,
            [x.tenant or "" for x in m],
        )
        await ctx.scheduler.arm([preset_timer(e.message, e.after, e.due, e.reason) for e in batch], conn)


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a step leaves its notification's state row, and the step it logs (if it ran)."""

    nid: str
    step: int
    state: str
    wait_for: str | None = None
    log: tuple[tuple[int, str, str], ...] = ()


def after_escalation(timer: Timer, nid: str, step: int, done: Escalated) -> tuple[Stored, Timer | None]:
    """Where an escalate step leaves the state row once :func:`escalate` said what it did, and the
    timer that runs it again when quiet hours end (a new key per hold). Pure."""
    reason = str(timer.data.get("reason", PUSH_TIMEOUT))
    if done.held_until is None:
        return Stored(nid, step + 1, "done", log=((step, "escalate", done.result),)), None
    until = done.held_until
    held = Timer(f"{timer.key}:held:{until.isoformat()}", KIND_STEP, until, data=timer.data)
    if reason == PUSH_TIMEOUT:  # a receipt meanwhile still ends it (see workflow_receipt)
        return Stored(nid, step, "waiting", "delivered"), held
    return Stored(nid, step, "running"), held


def receipt_ended(timer: Timer, nid: str, step: int, *, received: bool) -> Stored | None:
    """A receipt committed after the poller locked this waiting push's timer (its cancel missed or
    skipped it) ends the step without escalating; ``None``: escalate. Pure."""
    if str(timer.data.get("reason", PUSH_TIMEOUT)) == PUSH_TIMEOUT and received:
        return Stored(nid, step + 1, "done", log=((step, "escalate", "receipt"),))
    return None


async def escalation(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    timer: Timer,
    push: ChannelMessage,
    step: int,
    *,
    received: bool,
) -> tuple[Sequence[Output], Stored]:
    """The high preset's escalate step but for storing its state: its outputs and where it leaves
    the state row. ``received``: a receipt came for the notification (looked at by the caller).
    The batch (:mod:`consumers.workflow.preset_batch`) does the same for many at once."""
    nid = push.notification_id
    if (ended := receipt_ended(timer, nid, step, received=received)) is not None:
        return [], ended
    done = await escalate(ctx, conn, push, str(timer.data.get("reason", PUSH_TIMEOUT)))
    to, held = after_escalation(timer, nid, step, done)
    if held is not None:
        await ctx.scheduler.arm([held], conn)
    return done.outputs, to


async def escalate_step(
    ctx: FallbackContext, conn: asyncpg.Connection, timer: Timer, push: ChannelMessage, step: int
) -> Sequence[Output]:
    waiting = str(timer.data.get("reason", PUSH_TIMEOUT)) == PUSH_TIMEOUT
    received = waiting and await has_receipt(conn, push.notification_id)
    outputs, to = await escalation(ctx, conn, timer, push, step, received=received)
    await store_state(conn, to.nid, to.step, to.state, wait_for=to.wait_for, now=ctx.clock.now(), log=to.log)
    return outputs


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


async def lock_state(conn: asyncpg.Connection, notification_id: str) -> asyncpg.Record | None:
    """The notification's state row (route, step, state, event), locked until the fire commits."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT route, step, state, event FROM herald_workflows WHERE notification_id = $1 FOR UPDATE",
        notification_id,
    )
    return row


async def fire_preset_step(
    ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection, row: asyncpg.Record | None
) -> Sequence[Output]:
    """Due: run the preset's step once, unless a receipt ended it, it already ran or it was
    cancelled. ``row``: the notification's state row, locked (:func:`lock_state`)."""
    step = int(timer.data["step"])
    if row is None or row["state"] not in ACTIVE or row["step"] != step:
        return []
    message = ctx.codec.decode(row["event"], ChannelMessage)
    if message.tier is Tier.MEDIUM:
        await _digest(ctx, conn, message, step)
        return []
    return await escalate_step(ctx, conn, timer, message, step)
