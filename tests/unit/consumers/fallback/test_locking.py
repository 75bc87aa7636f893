"""Which state rows a fallback batch locks first, and in which order."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consumers.fallback.locking import state_rows
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

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _outcome(nid: str, status: OutcomeStatus, *, escalated: bool = False) -> DeliveryOutcome:
    message = ChannelMessage(
        notification_id=nid,
        event_id="e1",
        event_type="payment_receipt",
        user_id="u1",
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="payments",
        recipient="u1",
        template="payment_receipt",
        locale="en",
        idempotency_key=f"k-{nid}",
        occurred_at=T0,
        escalated_from="push-key" if escalated else None,
    )
    return DeliveryOutcome.about(message, status, outcome_id=f"o-{nid}-{status.value}", recorded_at=T0)


def test_receipts_and_outcomes_that_may_enter_a_step_lock_their_rows_others_do_not() -> None:
    signals: list[DeliveryOutcome | Receipt] = [
        Receipt("n5", "u1", ReceiptStatus.DELIVERED, at=T0),
        _outcome("n4", OutcomeStatus.SENT),
        _outcome("n3", OutcomeStatus.FAILED_PERMANENT),
        _outcome("n2", OutcomeStatus.FAILED_RETRYABLE),  # a retry that ran out escalates
        _outcome("n1", OutcomeStatus.DELIVERED),
        _outcome("n0", OutcomeStatus.SENT, escalated=True),  # an escalation's email: never a step
    ]
    assert state_rows(signals) == ["n2", "n3", "n4", "n5"]


@given(st.lists(st.sampled_from(["n1", "n2", "n3", "n4"]), max_size=12))
def test_the_rows_come_once_each_in_notification_id_order_whatever_the_batch_order(nids: list[str]) -> None:
    out = state_rows([Receipt(n, "u1", ReceiptStatus.READ, at=T0) for n in nids])
    assert out == sorted(set(nids))
