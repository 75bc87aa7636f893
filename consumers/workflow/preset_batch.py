"""The presets' steps of one poll fired together: the poller's batch handler for ``workflow_step``.

One by one, each step costs a savepoint, the lock of its state row, the step's own statements and
the state update (:func:`consumers.workflow.preset_run.fire_preset_step`). Together, the batch
locks every state row in one statement (in ``notification_id`` order, so two pollers lock in the
same order and never deadlock on them), looks at every medium item's inbox row in one, at the
receipts of every waiting push in one and at the users' contacts in one, joins the unread items
to their users' digests (two statements a user, in (tenant, user) order, and one for all the
items: :func:`consumers.fallback.digest.join_digests`), writes every escalation's row in one
(:func:`consumers.fallback.escalation.escalate_all`: a row that was already there, a replay's,
sends nothing again) and every step's state in one. What each step does is the same as one by one:

* a step runs only if its state row is a preset's, active and at that step, locked until the
  poller commits (a replay or a second poller finds it moved on and does nothing);
* a timer whose notification has another timer earlier in the poll, or whose state row is not a
  preset's (a route's own steps, a workflow not started yet), is left to the one-by-one path,
  which runs after the batch in the same transaction and sees what it wrote.

A batch that fails on data is undone by the poller and its timers fire one by one, so the bad one
is set aside alone (:class:`consumers.scheduler.store.TimerPoller`); :func:`relock_states` first
locks their state rows again, in the batch's order (one by one goes in due order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from consumers.fallback.context import Contact, FallbackContext, load_contacts
from consumers.fallback.digest import Joining, join_digests
from consumers.fallback.escalation import PUSH_TIMEOUT, Ask, escalate_all, received_among
from consumers.fallback.locking import lock_states
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from consumers.workflow.executor import ACTIVE
from consumers.workflow.preset_run import Stored, after_escalation, is_preset, receipt_ended
from schemas.models import ChannelMessage, Tier

__all__ = ["StateView", "fire_preset_steps", "join_order", "plan_steps", "relock_states"]

_LOCK_ALL = """
SELECT notification_id, route, step, state, event FROM herald_workflows
WHERE notification_id = ANY($1::text[]) ORDER BY notification_id FOR UPDATE
"""

# Every step's state and its log in one statement (one step a notification: a multi-row update
# may not touch a row twice, and plan_steps leaves a notification's second timer out).
_STORE_ALL = """
WITH t AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])
        AS t(n, s, st, w, rs, rk, rr)
),
ran AS (
    INSERT INTO herald_workflow_runs (notification_id, step, kind, result, ran_at)
    SELECT n, rs, rk, rr, $8 FROM t WHERE rk IS NOT NULL
    ON CONFLICT DO NOTHING
)
UPDATE herald_workflows w SET step = t.s, state = t.st, wait_for = t.w, updated_at = $8
FROM t WHERE w.notification_id = t.n
"""


@dataclass(frozen=True, slots=True)
class StateView:
    """What decides whether a step runs: its state row's route, step and state."""

    route: str
    step: int
    state: str


def _nid(timer: Timer) -> str:
    return str(timer.data["notification_id"])


def plan_steps(timers: Sequence[Timer], states: Mapping[str, StateView]) -> tuple[list[Timer], list[Timer]]:
    """The timers whose step the batch runs, and those it fires without running anything (the
    step already ran, was cancelled or a receipt ended it). The rest are left to the one-by-one
    path: a second timer of a notification in the poll, and a timer whose state row is missing
    or not a preset's. ``states`` by notification id. Pure."""
    run: list[Timer] = []
    noop: list[Timer] = []
    seen: set[str] = set()
    for timer in timers:
        nid = _nid(timer)
        if nid in seen:
            continue
        seen.add(nid)
        state = states.get(nid)
        if state is None or not is_preset(state.route):
            continue
        if state.state in ACTIVE and state.step == int(timer.data["step"]):
            run.append(timer)
        else:
            noop.append(timer)
    return run, noop


def join_order(items: Sequence[tuple[str, str]], inbox: Mapping[str, tuple[str, str, bool]]) -> list[str]:
    """Which digest steps join a digest, in the order they join: ``items`` are (timer key, inbox
    idempotency key), ``inbox`` the rows found (tenant, user, read). An item whose row is gone or
    read does not join. Ordered by (tenant, user), so two pollers lock the users' digests in the
    same order. Pure."""
    unread = [
        (row[0], row[1], key) for key, idem in items if (row := inbox.get(idem)) is not None and not row[2]
    ]
    return [key for _, _, key in sorted(unread)]


async def relock_states(timers: Sequence[Timer], conn: asyncpg.Connection) -> None:
    """The state rows :func:`fire_preset_steps` locked, locked again in its order once the poller
    undid it (its savepoint's rollback released them)."""
    await lock_states(conn, sorted({_nid(t) for t in timers}))


async def fire_preset_steps(
    ctx: FallbackContext, timers: Sequence[Timer], conn: asyncpg.Connection
) -> Mapping[str, Sequence[Output]]:
    """Run the due preset steps of ``timers`` together; their outputs by timer key."""
    nids = sorted({_nid(t) for t in timers})
    rows = {r["notification_id"]: r for r in await conn.fetch(_LOCK_ALL, nids)}
    run, noop = plan_steps(timers, {n: StateView(r["route"], r["step"], r["state"]) for n, r in rows.items()})
    out: dict[str, Sequence[Output]] = {t.key: [] for t in noop}
    digests: list[tuple[Timer, ChannelMessage]] = []
    pushes: list[tuple[Timer, ChannelMessage]] = []
    for timer in run:
        message = ctx.codec.decode(rows[_nid(timer)]["event"], ChannelMessage)
        (digests if message.tier is Tier.MEDIUM else pushes).append((timer, message))
    joining = await _joining(conn, digests)
    received = await _received(conn, [t for t, _ in pushes])
    # one look at the users whose items join a digest and at those a push may escalate to
    who = {(j.tenant, j.user_id) for j in joining.values()}
    who |= {(m.tenant or "", m.user_id) for t, m in pushes if _nid(t) not in received}
    contacts = await load_contacts(conn, who, ctx.default_locale) if who else {}
    await join_digests(ctx, conn, list(joining.values()), contacts)
    stored: list[Stored] = []
    for timer, _ in digests:
        step = int(timer.data["step"])
        result = "joined" if timer.key in joining else "read"
        stored.append(Stored(_nid(timer), step + 1, "done", log=((step, "digest", result),)))
        out[timer.key] = []
    escalating: list[tuple[Timer, ChannelMessage]] = []
    for timer, push in pushes:
        ended = receipt_ended(timer, _nid(timer), int(timer.data["step"]), received=_nid(timer) in received)
        if ended is None:
            escalating.append((timer, push))
        else:
            out[timer.key] = []
            stored.append(ended)
    stored += await _escalate(ctx, conn, escalating, contacts, out)
    if stored:  # a preset's step logs one run at most
        await conn.execute(
            _STORE_ALL,
            [x.nid for x in stored],
            [x.step for x in stored],
            [x.state for x in stored],
            [x.wait_for for x in stored],
            [x.log[0][0] if x.log else None for x in stored],
            [x.log[0][1] if x.log else None for x in stored],
            [x.log[0][2] if x.log else None for x in stored],
            ctx.clock.now(),
        )
    return out


async def _escalate(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    pushes: Sequence[tuple[Timer, ChannelMessage]],
    contacts: Mapping[tuple[str, str], Contact],
    out: dict[str, Sequence[Output]],
) -> list[Stored]:
    """The escalations of the batch: every row in one statement (:func:`escalate_all`), the quiet
    hours' timers in one; their outputs into ``out`` by timer key, where they leave their rows."""
    asks = [
        Ask(push, str(t.data.get("reason", PUSH_TIMEOUT)), contacts[(push.tenant or "", push.user_id)])
        for t, push in pushes
    ]
    stored: list[Stored] = []
    held: list[Timer] = []
    for (timer, push), done in zip(pushes, await escalate_all(ctx, conn, asks), strict=True):
        to, again = after_escalation(timer, push.notification_id, int(timer.data["step"]), done)
        out[timer.key] = done.outputs
        stored.append(to)
        held += [again] if again is not None else []
    await ctx.scheduler.arm(held, conn)
    return stored


async def _received(conn: asyncpg.Connection, timers: Sequence[Timer]) -> set[str]:
    """The notifications of these waiting pushes a receipt came for (after the poller locked their
    timers: their cancels missed). One look for all."""
    return await received_among(
        conn, [_nid(t) for t in timers if str(t.data.get("reason", PUSH_TIMEOUT)) == PUSH_TIMEOUT]
    )


async def _joining(
    conn: asyncpg.Connection, steps: Sequence[tuple[Timer, ChannelMessage]]
) -> dict[str, Joining]:
    """The medium steps whose item is still unread, by timer key, in the order they join
    (:func:`join_order`): one look at every item's inbox row (archived or erased: gone)."""
    if not steps:
        return {}
    found = await conn.fetch(
        "SELECT id, idempotency_key, user_id, tenant, read_at FROM herald_inbox "
        "WHERE idempotency_key = ANY($1::text[])",
        [m.idempotency_key for _, m in steps],
    )
    inbox = {r["idempotency_key"]: r for r in found}
    by_key = {t.key: m for t, m in steps}
    order = join_order(
        [(t.key, m.idempotency_key) for t, m in steps],
        {k: (r["tenant"], r["user_id"], r["read_at"] is not None) for k, r in inbox.items()},
    )
    out: dict[str, Joining] = {}
    for key in order:
        m = by_key[key]
        row = inbox[m.idempotency_key]
        out[key] = Joining(
            row["id"],
            row["tenant"],
            row["user_id"],
            m.notification_id,
            m.idempotency_key,
            m.event_id,
            m.event_type,
        )
    return out
