"""Receipts become ``delivered``/``read`` outcomes, so every reader sees one history.

A receipt (``herald.receipts``: the apps' ``POST /v1/receipts``, the inbox's mark-read, ``herald
receipt``) says a notification reached a device or was read on one channel. The fallback turns it
into a :class:`~schemas.models.DeliveryOutcome` on ``herald.outcomes`` for the message that
channel sent, keyed like every outcome (notification id) with a deterministic outcome id, so
dashboards, the escalation logic and ``herald why`` read the same history.

To know which message a receipt is about, the fallback remembers each ``sent`` outcome's message
in ``herald_sent`` (one row per idempotency key). Order does not matter: a receipt that arrives
before its ``sent`` outcome is stored (``herald_receipts``) and turned into an outcome when the
``sent`` outcome comes; both paths produce the same outcome id, so a replay or the race produce
one outcome id, never two different ones.

A receipt from ``POST /v1/receipts`` names its notification by id, and any end-user token can
name any id (they are computable from an event id and a user id): one whose user is not the
notification's (:func:`notification_owner`: the stored message, workflow or critical check) is
dropped before it does anything, counted in ``herald_receipts_foreign_total``. One that comes
before anything says whose the notification is waits in ``herald_early_receipts`` (migration 260),
one row per (notification, status, user), so another user's cannot take the owner's place; the
``sent`` outcome moves the owner's into ``herald_receipts`` and drops the others (counted), and
the inbox janitor deletes what waited an hour (ids nothing sends).

The outcomes of a batch are remembered together (:func:`remember_sent`): one insert of every
``sent`` message and one look for their early receipts, not two round trips per outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.decisions import receipt_is_foreign
from consumers.infra.keys import outcome_id
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from schemas.models import ChannelMessage, DeliveryOutcome, OutcomeStatus, Receipt, ReceiptStatus

__all__ = [
    "keep_early",
    "notification_owner",
    "outcome_for_receipt",
    "receipt_outcomes",
    "receipt_status",
    "remember_sent",
]

log = logging.getLogger(__name__)

# A push that was opened was read; the inbox reports reads directly.
_STATUS = {
    ReceiptStatus.DELIVERED: OutcomeStatus.DELIVERED,
    ReceiptStatus.OPENED: OutcomeStatus.READ,
    ReceiptStatus.READ: OutcomeStatus.READ,
}


def receipt_status(status: ReceiptStatus | str) -> OutcomeStatus:
    return _STATUS[ReceiptStatus(status)]


def outcome_for_receipt(
    message: ChannelMessage, status: ReceiptStatus | str, *, source: str, at: datetime, now: datetime
) -> DeliveryOutcome:
    """The outcome a receipt makes for the message it is about. Pure: same inputs, same outcome id."""
    outcome_status = receipt_status(status)
    return DeliveryOutcome.about(
        message,
        outcome_status,
        outcome_id=outcome_id(message.idempotency_key, outcome_status.value),
        recorded_at=now,
        reason=f"receipt:{ReceiptStatus(status).value}",
        detail=f"{ReceiptStatus(status).value} receipt from {source} at {at.isoformat()}",
    )


async def remember_sent(
    ctx: FallbackContext, conn: asyncpg.Connection, outcomes: Sequence[DeliveryOutcome]
) -> list[list[Output]]:
    """Keep each ``sent`` outcome's message for its receipts and answer the receipts that came
    before it, in two statements whatever their number: the outputs per outcome, in order (``[]``
    for the outcomes that are not ``sent``)."""
    found: list[list[Output]] = [[] for _ in outcomes]
    sent = [
        (i, o.message, o.recorded_at)
        for i, o in enumerate(outcomes)
        if o.status is OutcomeStatus.SENT and o.message is not None
    ]
    if not sent:
        return found
    await conn.execute(
        "INSERT INTO herald_sent (idempotency_key, notification_id, channel, message, sent_at) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[]) "
        "ON CONFLICT DO NOTHING",
        [m.idempotency_key for _, m, _ in sent],
        [m.notification_id for _, m, _ in sent],
        [m.channel.value for _, m, _ in sent],
        [ctx.codec.encode(m) for _, m, _ in sent],
        [at for _, _, at in sent],
    )
    owners = {m.notification_id: (m.user_id, m.tenant or "") for _, m, _ in sent}
    rows = await conn.fetch(
        _EARLY, list(owners), [u for u, _ in owners.values()], [t for _, t in owners.values()]
    )
    if not rows:
        return found
    early: dict[str, list[asyncpg.Record]] = {}
    foreign: list[asyncpg.Record] = []
    seen = {(r["notification_id"], r["status"]) for r in rows if not r["waited"]}
    dropped = 0
    for r in rows:
        owner, owner_tenant = owners[r["notification_id"]]
        if receipt_is_foreign(
            r["source"], r["user_id"], owner, tenant=r["tenant"], owner_tenant=owner_tenant
        ):
            if r["waited"]:
                dropped += 1  # deleted by the statement already
            else:
                foreign.append(r)  # stored before migration 260
        elif not r["waited"] or (r["notification_id"], r["status"]) not in seen:
            seen.add((r["notification_id"], r["status"]))
            early.setdefault(r["notification_id"], []).append(r)
    if foreign:
        await _forget(conn, foreign)
    if dropped:
        metrics.RECEIPTS_FOREIGN.inc(dropped)
        log.warning("dropped %d early receipts posted by another user than the notification's", dropped)
    for i, m, _ in sent:
        mine = [r for r in early.get(m.notification_id, ()) if r["channel"] in (None, m.channel.value)]
        found[i] = _outputs(ctx, [(m, r["status"], r["source"], r["at"]) for r in mine])
    return found


async def keep_early(conn: asyncpg.Connection, receipt: Receipt, now: datetime) -> None:
    """An API receipt for a notification nobody is known to own yet: it waits for its ``sent``
    outcome, beside any other user's for the same id."""
    await conn.execute(
        "INSERT INTO herald_early_receipts (notification_id, status, user_id, tenant, channel, at, source, "
        "received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        receipt.notification_id,
        receipt.status.value,
        receipt.user_id,
        receipt.tenant,
        receipt.channel.value if receipt.channel else None,
        receipt.at,
        receipt.source,
        now,
    )


async def _forget(conn: asyncpg.Connection, foreign: Sequence[asyncpg.Record]) -> None:
    """Early receipts of another user stored before migration 260 kept them apart: gone before an
    escalation or a preset reads them."""
    await conn.execute(
        "DELETE FROM herald_receipts r USING unnest($1::text[], $2::text[]) AS f(nid, status) "
        "WHERE r.notification_id = f.nid AND r.status = f.status",
        [r["notification_id"] for r in foreign],
        [r["status"] for r in foreign],
    )
    metrics.RECEIPTS_FOREIGN.inc(len(foreign))
    log.warning("dropped %d early receipts posted by another user than the notification's", len(foreign))


# The receipts of just-sent notifications, in one statement: those stored, and those that waited
# for the sent outcome (``waited``), taken out of herald_early_receipts, the owner's moved into
# herald_receipts (the SELECT's snapshot does not see them there: they come from ``early``).
# A waited receipt is the owner's when it names the owner's user id and, if it says one (Receipt
# v2), the owner's tenant: receipt_is_foreign's rule, in SQL.
_EARLY = """
WITH owners AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS o(nid, owner, owner_tenant)),
early AS (
    DELETE FROM herald_early_receipts e USING owners o WHERE e.notification_id = o.nid
    RETURNING e.notification_id, e.channel, e.status, e.at, e.source, e.user_id, e.tenant, o.owner,
        o.owner_tenant
),
moved AS (
    INSERT INTO herald_receipts (notification_id, status, user_id, channel, at, source)
    SELECT notification_id, status, user_id, channel, at, source FROM early
    WHERE user_id = owner AND (tenant IS NULL OR tenant = owner_tenant)
    ON CONFLICT DO NOTHING
)
SELECT notification_id, channel, status, at, source, user_id, NULL::text AS tenant, false AS waited
FROM herald_receipts WHERE notification_id = ANY($1::text[])
UNION ALL SELECT notification_id, channel, status, at, source, user_id, tenant, true FROM early
"""


async def notification_owner(
    ctx: FallbackContext, conn: asyncpg.Connection, notification_id: str
) -> tuple[str, str | None] | None:
    """The user a notification is for and its tenant ("" the default one), if the fallback knows
    them yet: its workflow's, its critical check's (since migration 262), or a sent message's.
    Tenant None: unknown (a check written by a version before 262 during a rolling upgrade, or
    one migration 263 found no tenant for): the receipt is then compared with the user only."""
    row = await conn.fetchrow(
        "SELECT user_id, tenant, NULL::bytea AS message FROM herald_workflows WHERE notification_id = $1 "
        "UNION ALL SELECT user_id, tenant, NULL FROM herald_critical_watch WHERE notification_id = $1 "
        "UNION ALL (SELECT NULL, NULL, message FROM herald_sent WHERE notification_id = $1 LIMIT 1) LIMIT 1",
        notification_id,
    )
    if row is None:
        return None
    if row["user_id"] is not None:
        return str(row["user_id"]), row["tenant"]
    message = ctx.codec.decode(row["message"], ChannelMessage)
    return message.user_id, message.tenant or ""


async def receipt_outcomes(ctx: FallbackContext, conn: asyncpg.Connection, receipt: Receipt) -> list[Output]:
    """The outcomes of a receipt: one per message sent for its notification (on its channel)."""
    rows = await conn.fetch(
        "SELECT message FROM herald_sent WHERE notification_id = $1 AND ($2::text IS NULL OR channel = $2)",
        receipt.notification_id,
        receipt.channel.value if receipt.channel else None,
    )
    messages = [ctx.codec.decode(r["message"], ChannelMessage) for r in rows]
    return _outputs(ctx, [(m, receipt.status, receipt.source, receipt.at) for m in messages])


def _outputs(
    ctx: FallbackContext, found: Iterable[tuple[ChannelMessage, ReceiptStatus | str, str, datetime]]
) -> list[Output]:
    now = ctx.clock.now()
    return [
        ctx.outcome_output(outcome_for_receipt(m, status, source=source, at=at, now=now))
        for m, status, source, at in found
    ]
