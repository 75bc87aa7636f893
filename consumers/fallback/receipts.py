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
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.infra.keys import outcome_id
from consumers.runtime.handling import Output
from schemas.models import ChannelMessage, DeliveryOutcome, OutcomeStatus, Receipt, ReceiptStatus

__all__ = ["outcome_for_receipt", "receipt_outcomes", "receipt_status", "remember_sent"]

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
    ctx: FallbackContext, conn: asyncpg.Connection, outcome: DeliveryOutcome
) -> list[Output]:
    """Keep a sent message for its receipts; answer receipts that came before it."""
    message = outcome.message
    if message is None:
        return []
    await conn.execute(
        "INSERT INTO herald_sent (idempotency_key, notification_id, channel, message, sent_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        message.idempotency_key,
        message.notification_id,
        message.channel.value,
        ctx.codec.encode(message),
        outcome.recorded_at,
    )
    early = await conn.fetch(
        "SELECT status, at, source FROM herald_receipts "
        "WHERE notification_id = $1 AND (channel = $2 OR channel IS NULL)",
        message.notification_id,
        message.channel.value,
    )
    return _outputs(ctx, [(message, r["status"], r["source"], r["at"]) for r in early])


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
