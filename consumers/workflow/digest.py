"""A workflow's ``digest`` step: notifications collected per (tenant, user, route, window), sent as one.

One digest row per (tenant, user, route, window) and one item row per notification are unique,
and the digest row is locked while items join and while it is sent, so a replay, two pollers or
two items at once never make a second digest or lose an item. The digest message goes through
the same checks as any send (``consumers.workflow.sending``), with the profile of the user in
the digest's tenant, and carries that tenant; its key derives from the digest row.

A tenant's items never go out under another tenant: the same user id in two tenants has two
digests. A digest row from before migration 240 (keyed by user only) may hold two tenants'
items; it is sent as one message per tenant (:func:`tenant_groups`).

Sending reads the newest ``max_items`` items per tenant and a count of the rest, never every
item, and deletes the digest's items with it (the row stays, ``sent``, with its count). The digest
step, tier, category and lane are those the digest's first item joined with (``pinned``, from
migration 270), whatever the routing file in use says by then, or whether it has the route at all.
A digest from before 270 needs its route, still ending with a digest step; without it, each item
gets a ``cancelled`` outcome (``route_changed``), at most :data:`CANCEL_CHUNK` items a fire.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from consumers.classifier.routing import Route
from consumers.fallback.decisions import DIGEST_EVENT_TYPE, DigestItem, digest_content, digest_window
from consumers.infra.keys import derived_key
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from consumers.workflow.cancel import scoped_cancel_key
from consumers.workflow.context import KIND_DIGEST_SEND, WorkflowContext, workflow_outcome
from consumers.workflow.pinned import dump_pin, load_pin
from consumers.workflow.sending import send_step
from consumers.workflow.steps import Digest, StepError
from schemas.errors import RecordError
from schemas.models import DomainEvent, OutcomeStatus, Tier

__all__ = [
    "CANCEL_CHUNK",
    "digest_item",
    "digest_message_key",
    "fire_digest",
    "join_digest",
    "regroup",
    "tenant_groups",
]

log = logging.getLogger(__name__)
CANCEL_CHUNK = 1000
"""Items a due digest that cannot be sent cancels in one fire: the fire's outcomes are held until
the broker acks them; the rest wait for the next fire, due at once."""


def _send_timer(digest_id: int, due_at: datetime) -> Timer:
    return Timer(
        key=derived_key(f"workflow-digest:{digest_id}", "send"),
        kind=KIND_DIGEST_SEND,
        due_at=due_at,
        data={"digest_id": digest_id},
    )


async def join_digest(
    ctx: WorkflowContext,
    conn: asyncpg.Connection,
    *,
    nid: str,
    event: DomainEvent,
    route: Route,
    step: Digest,
    now: datetime,
) -> int:
    """Add the notification to the (tenant, user)'s pending digest of this route; returns the digest's id."""
    window = digest_window(now, step.window_s)
    tenant = event.tenant or ""
    while True:
        send_at = max(now + timedelta(seconds=step.send_after_s), window)
        # A digest from before migration 271 (no copy) takes this item's: without one it would be
        # cancelled with every item in it when its route is gone at the fire.
        await conn.execute(
            "INSERT INTO herald_workflow_digests (tenant, user_id, route, window_start, send_at, pinned) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, user_id, route, window_start) "
            "DO UPDATE SET pinned = EXCLUDED.pinned WHERE herald_workflow_digests.pinned IS NULL",
            tenant,
            event.user_id,
            route.match,
            window,
            send_at,
            dump_pin(route, (step,)),
        )
        row = await conn.fetchrow(
            "SELECT id, state, send_at FROM herald_workflow_digests "
            "WHERE tenant = $1 AND user_id = $2 AND route = $3 AND window_start = $4 FOR UPDATE",
            tenant,
            event.user_id,
            route.match,
            window,
        )
        assert row is not None
        if row["state"] == "pending":
            break
        window += timedelta(seconds=step.window_s)  # this window's digest went out: the next one's
    digest_id = int(row["id"])
    await conn.execute(
        "INSERT INTO herald_workflow_digest_items (notification_id, digest_id, cancel_key, event, joined_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        nid,
        digest_id,
        scoped_cancel_key(event.cancel_key, event.tenant),
        ctx.decide.codec.encode(event),
        now,
    )
    await ctx.scheduler.arm([_send_timer(digest_id, row["send_at"])], conn)
    return digest_id


def tenant_groups(tenants: Sequence[str], own: str) -> list[tuple[str, list[int]]]:
    """The digest's items (by index) per tenant, the digest's own tenant first, then in order of
    first appearance. A digest made since migration 240 holds its own tenant's items only (one
    group); an older one may hold two tenants', which must never share a message."""
    groups: dict[str, list[int]] = {own: []}
    for i, tenant in enumerate(tenants):
        groups.setdefault(tenant, []).append(i)
    return [(t, idx) for t, idx in groups.items() if idx]


def digest_message_key(digest_id: int, tenant: str, own: str) -> str:
    """The key of the digest's message to ``tenant``: for its own tenant the key it always had;
    another tenant's items (a digest from before migration 240) get a key of their own."""
    purpose = "message" if tenant == own else f"message:{tenant}"
    return derived_key(f"workflow-digest:{digest_id}", purpose)


def digest_item(event: DomainEvent, joined_at: datetime) -> DigestItem:
    """The event as a digest line; a payload that cannot be read (not an object, nested too deeply
    to parse: an :class:`~schemas.errors.InvalidContent`) lists it under its type alone."""
    try:
        data = event.data()
    except (ValueError, RecordError):
        data = {}
    title = str(data.get("title") or event.type)
    body = str(data.get("body") or data.get("text") or "")
    return DigestItem(title, body, joined_at)


def regroup(
    tenants: Sequence[str], parts: Sequence[str | None], totals: Sequence[int], own: str
) -> list[tuple[str, list[int], int]]:
    """The kept items (by index) per tenant, by each event's own tenant (:func:`tenant_groups`),
    and how many items each tenant has in the digest. ``parts``/``totals``: the tenant the item was
    counted under (its workflow row's; None: the row is gone, the user erased) and that tenant's
    count. A tenant counts its own items; an item counted under another tenant (or none) counts
    where it belongs, and no longer where it was counted. Pure."""
    total_of = {p: n for p, n in zip(parts, totals, strict=True) if p is not None}
    moved = Counter(p for t, p in zip(tenants, parts, strict=True) if p is not None and p != t)
    out: list[tuple[str, list[int], int]] = []
    for tenant, idx in tenant_groups(tenants, own):
        strays = sum(1 for i in idx if parts[i] != tenant)
        own_count = total_of[tenant] - moved[tenant] if tenant in total_of else 0
        out.append((tenant, idx, own_count + strays))
    return out


# The newest ``$2`` items of each tenant in the digest, and each tenant's count: the poller holds
# at most (tenants + 1) x max_items events, whatever the digest holds (events are up to 256 KB
# each). The tenant is the item's workflow row's (a digest from before migration 240 may hold two
# tenants'); items without one (the user erased) rank apart, and are listed under their event's
# own tenant (:func:`regroup`), never under the digest's.
_NEWEST = """
WITH ranked AS (
    SELECT i.notification_id, i.joined_at, w.tenant,
           row_number() OVER (PARTITION BY w.tenant ORDER BY i.joined_at DESC, i.notification_id) AS rn,
           count(*) OVER (PARTITION BY w.tenant) AS total
    FROM herald_workflow_digest_items i LEFT JOIN herald_workflows w USING (notification_id)
    WHERE i.digest_id = $1
)
SELECT r.tenant, r.total, r.joined_at, i.event
FROM ranked r JOIN herald_workflow_digest_items i USING (notification_id)
WHERE r.rn <= $2
ORDER BY r.joined_at DESC, r.notification_id
"""


async def _cancel_items(
    ctx: WorkflowContext, conn: asyncpg.Connection, digest_id: int, *, reason: str, detail: str
) -> list[Output]:
    """The digest cannot be sent: its items, up to :data:`CANCEL_CHUNK` a fire, each get a
    ``cancelled`` outcome (``reason``, seen by ``herald why``) and are deleted; while some are
    left the digest fires again at once, and then it is deleted. Read through a cursor: one
    event at a time, only the outcomes kept."""
    now = ctx.clock.now()
    outputs: list[Output] = []
    done: list[str] = []
    query = (
        "SELECT notification_id, event FROM herald_workflow_digest_items WHERE digest_id = $1 "
        "ORDER BY notification_id LIMIT $2"
    )
    async for r in conn.cursor(query, digest_id, CANCEL_CHUNK):
        event = ctx.decide.codec.decode(r["event"], DomainEvent)
        now_route = ctx.table.match(event.type)
        outcome = workflow_outcome(
            r["notification_id"],
            event,
            tier=now_route.tier if now_route is not None else Tier.MEDIUM,
            step=-1,  # the digest, after the run's last step
            status=OutcomeStatus.CANCELLED,
            reason=reason,
            detail=detail,
            now=now,
        )
        outputs.append(ctx.outcome_output(outcome))
        done.append(r["notification_id"])
    await conn.execute(
        "DELETE FROM herald_workflow_digest_items WHERE notification_id = ANY($1::text[])", done
    )
    log.warning("workflow digest %s: %s; %d items cancelled", digest_id, detail, len(done))
    left = await conn.fetchval(
        "SELECT 1 FROM herald_workflow_digest_items WHERE digest_id = $1 LIMIT 1", digest_id
    )
    if left is None:
        await conn.execute("DELETE FROM herald_workflow_digests WHERE id = $1", digest_id)
    else:  # a key of its own: the timer firing now is spent
        again = _send_timer(digest_id, now)
        await ctx.scheduler.arm([dataclasses.replace(again, key=derived_key(again.key, done[-1]))], conn)
    return outputs


async def _digest_route(
    ctx: WorkflowContext, conn: asyncpg.Connection, digest: asyncpg.Record
) -> tuple[Route, Digest] | list[Output]:
    """The route and the digest step to send the digest with, or the outcomes of its items when it
    cannot be sent."""
    match: str = digest["route"]
    route = ctx.route(match)
    if digest["pinned"] is not None:
        try:
            pin = load_pin(digest["pinned"])
        except StepError as exc:
            detail = f"digest of route {match!r}: its copy of the route cannot be read: {exc}"
            return await _cancel_items(ctx, conn, digest["id"], reason="pin_invalid", detail=detail)
        step = pin.steps[-1]
        if isinstance(step, Digest):
            return (route if route is not None else pin.route(match)), step
        detail = f"digest of route {match!r}: its copy of the route has no digest step"
        return await _cancel_items(ctx, conn, digest["id"], reason="pin_invalid", detail=detail)
    # A digest from before 270: the route's digest step, if the route is still there and has one.
    last = route.steps[-1] if route is not None and route.steps else None
    if route is None or not isinstance(last, Digest):
        detail = f"digest of route {match!r}: the route is gone from the routing file or has no digest step"
        return await _cancel_items(ctx, conn, digest["id"], reason="route_changed", detail=detail)
    return route, last


async def fire_digest(ctx: WorkflowContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due: send the digest once, listing the newest ``max_items`` items and how many more."""
    digest_id = int(timer.data["digest_id"])
    digest = await conn.fetchrow(
        "SELECT id, tenant, user_id, route, state, pinned FROM herald_workflow_digests WHERE id = $1 FOR UPDATE",
        digest_id,
    )
    if digest is None or digest["state"] != "pending":
        return []
    found = await _digest_route(ctx, conn, digest)
    if isinstance(found, list):
        return found
    route, step = found
    rows = await conn.fetch(_NEWEST, digest_id, step.max_items)
    if not rows:
        await conn.execute("DELETE FROM herald_workflow_digests WHERE id = $1", digest_id)
        return []
    now = ctx.clock.now()
    events = [ctx.decide.codec.decode(r["event"], DomainEvent) for r in rows]
    items = [digest_item(e, r["joined_at"]) for e, r in zip(events, rows, strict=True)]
    user_id: str = digest["user_id"]
    outputs: list[Output] = []
    groups = regroup(
        [e.tenant or "" for e in events],
        [r["tenant"] for r in rows],
        [int(r["total"]) for r in rows],
        digest["tenant"],
    )
    for tenant, idx, count in groups:
        content = digest_content([items[i] for i in idx], step.max_items)
        content["more"] = count - len(content["items"])
        key = digest_message_key(digest_id, tenant, digest["tenant"])
        digest_event = DomainEvent(
            event_id=f"digest:{key}",
            type=DIGEST_EVENT_TYPE,
            occurred_at=now,
            user_id=user_id,
            locale=events[idx[0]].locale,  # the newest item's
            tenant=tenant or None,
            payload=json.dumps(content, separators=(",", ":")),
        )
        sent = send_step(
            digest_event,
            dataclasses.replace(route, template=DIGEST_EVENT_TYPE),
            channels=(step.channel,),
            step=0,
            first_send=True,
            profile=await ctx.profile(user_id, tenant),
            now=now,
            cfg=ctx.decide,
        )
        await ctx.scheduler.arm(sent.timers, conn)
        outputs += sent.decision.outputs
        log.info("workflow digest %s for user %s (tenant %r): %d items", route.match, user_id, tenant, count)
    # Sent: the items are done with (a cancel_key finds nothing to cancel in a digest that went
    # out); the row keeps the count, and the window's place for items joining late.
    total = sum({r["tenant"]: int(r["total"]) for r in rows}.values())  # every tenant's, and the erased
    await conn.execute(
        "UPDATE herald_workflow_digests SET state = 'sent', item_count = $2 WHERE id = $1",
        digest_id,
        total,
    )
    await conn.execute("DELETE FROM herald_workflow_digest_items WHERE digest_id = $1", digest_id)
    return outputs
