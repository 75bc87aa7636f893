"""Outcomes, receipts and dead letters as the pipeline writes them, for the activity-store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.infra import keys
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    Lane,
    OutcomeStatus,
    Receipt,
    ReceiptStatus,
    Tier,
)

__all__ = ["message", "outcome", "receipt"]


def message(
    event_id: str, user: str, channel: Channel = Channel.PUSH, *, at: datetime | None = None, attempt: int = 1
) -> ChannelMessage:
    recipient = f"{user}@example.com" if channel is Channel.EMAIL else f"tok-{user}"
    return ChannelMessage(
        notification_id=keys.notification_id(event_id, user),
        event_id=event_id,
        event_type="security_alert",
        user_id=user,
        channel=channel,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="security",
        recipient=recipient,
        template="security_alert",
        locale="en",
        idempotency_key=keys.idempotency_key(event_id, channel.value, recipient),
        occurred_at=at or datetime.now(UTC),
        tenant="acme",
        attempt=attempt,
    )


def outcome(
    m: ChannelMessage,
    status: OutcomeStatus,
    *,
    after_s: float = 1.0,
    **fields: object,
) -> DeliveryOutcome:
    return DeliveryOutcome.about(
        m,
        status,
        outcome_id=keys.outcome_id(m.idempotency_key, status.value, m.attempt),
        recorded_at=m.occurred_at + timedelta(seconds=after_s),
        **fields,
    )


def receipt(
    m: ChannelMessage, status: ReceiptStatus = ReceiptStatus.DELIVERED, after_s: float = 2.0
) -> Receipt:
    return Receipt(
        notification_id=m.notification_id,
        user_id=m.user_id,
        status=status,
        at=m.occurred_at + timedelta(seconds=after_s),
        channel=m.channel,
    )
