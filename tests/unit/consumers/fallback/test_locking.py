"""Which state rows a fallback batch locks first, and in which order: those the handler writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.routing import DEFAULT_CHANNELS, DEFAULT_FALLBACK
from consumers.fallback.locking import enters_step, state_rows, watch_rows
from consumers.workflow.presets import preset_steps
from consumers.workflow.steps import Step
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
CUSTOM = "custom.route"


def _outcome(
    nid: str,
    status: OutcomeStatus,
    *,
    escalated: bool = False,
    channel: Channel = Channel.PUSH,
    tier: Tier = Tier.HIGH,
    event_type: str = "payment_receipt",
) -> DeliveryOutcome:
    message = ChannelMessage(
        notification_id=nid,
        event_id="e1",
        event_type=event_type,
        user_id="u1",
        channel=channel,
        lane=Lane.PRIORITY,
        tier=tier,
        category="payments",
        recipient="u1",
        template="payment_receipt",
        locale="en",
        idempotency_key=f"k-{nid}",
        occurred_at=T0,
        escalated_from="push-key" if escalated else None,
    )
    return DeliveryOutcome.about(message, status, outcome_id=f"o-{nid}-{status.value}", recorded_at=T0)


def _steps(message: ChannelMessage) -> Sequence[Step]:
    """The tier presets, as the handler without a routing table expands them."""
    tier = message.tier
    return preset_steps(tier, DEFAULT_CHANNELS[tier], fallback=DEFAULT_FALLBACK.get(tier, ()))


def _custom(event_type: str) -> bool:
    return event_type == CUSTOM


def test_receipts_and_outcomes_that_enter_a_step_lock_their_rows_others_do_not() -> None:
    signals: list[DeliveryOutcome | Receipt] = [
        Receipt("n9", "u1", ReceiptStatus.DELIVERED, at=T0),
        _outcome("n8", OutcomeStatus.SENT),  # high push sent: waits for a receipt
        _outcome("n7", OutcomeStatus.FAILED_PERMANENT),  # high push failed: escalates now
        _outcome("n6", OutcomeStatus.FAILED_RETRYABLE),  # a high push's retry may run out and escalate
        _outcome("n5", OutcomeStatus.SENT, channel=Channel.IN_APP, tier=Tier.MEDIUM),  # digest item
        _outcome("n4", OutcomeStatus.SENT, channel=Channel.PUSH, tier=Tier.MEDIUM),  # no step after
        _outcome("n3", OutcomeStatus.FAILED_RETRYABLE, channel=Channel.IN_APP, tier=Tier.MEDIUM),
        _outcome("n2", OutcomeStatus.SENT, event_type=CUSTOM),  # its own steps: only retries here
        _outcome("n1", OutcomeStatus.DELIVERED),
        _outcome("n0", OutcomeStatus.SENT, escalated=True),  # an escalation's email: never a step
    ]
    assert state_rows(signals, _steps, _custom) == ["n5", "n6", "n7", "n8", "n9"]


@given(
    st.sampled_from(list(OutcomeStatus)),
    st.sampled_from([Channel.PUSH, Channel.IN_APP, Channel.EMAIL, Channel.SMS]),
    st.sampled_from(list(Tier)),
    st.booleans(),
    st.booleans(),
)
def test_only_an_outcome_of_a_preset_whose_channel_has_a_step_after_it_enters_one(
    status: OutcomeStatus, channel: Channel, tier: Tier, escalated: bool, custom: bool
) -> None:
    outcome = _outcome("n1", status, channel=channel, tier=tier, escalated=escalated)
    assert outcome.message is not None
    entered = enters_step(outcome, _steps(outcome.message), custom=custom)
    if (
        custom
        or escalated
        or status
        not in (
            OutcomeStatus.SENT,
            OutcomeStatus.FAILED_PERMANENT,
            OutcomeStatus.FAILED_RETRYABLE,
        )
    ):
        assert not entered
    elif tier is Tier.HIGH and channel is Channel.PUSH:
        assert entered  # sent: waits; failed: escalates now; a retry: when it runs out
    elif tier is Tier.MEDIUM and channel is Channel.IN_APP:
        assert entered == (status is OutcomeStatus.SENT)
    else:
        assert not entered


@given(st.lists(st.sampled_from(["n1", "n2", "n3", "n4"]), max_size=12))
def test_the_rows_come_once_each_in_notification_id_order_whatever_the_batch_order(nids: list[str]) -> None:
    out = state_rows([Receipt(n, "u1", ReceiptStatus.READ, at=T0) for n in nids], _steps, _custom)
    assert out == sorted(set(nids))


def test_the_watch_rows_are_the_receipts_and_the_watched_critical_outcomes_in_notification_order() -> None:
    signals: list[DeliveryOutcome | Receipt] = [
        Receipt("n-d", "u1", ReceiptStatus.READ, at=T0),
        _outcome("n-c", OutcomeStatus.SENT, channel=Channel.SMS, tier=Tier.CRITICAL),
        _outcome("n-b", OutcomeStatus.SENT, channel=Channel.SMS),  # not critical: no watch
        _outcome("n-a", OutcomeStatus.SENT, channel=Channel.SMS, tier=Tier.CRITICAL, event_type=CUSTOM),
        _outcome("n-c", OutcomeStatus.FAILED_PERMANENT, channel=Channel.EMAIL, tier=Tier.CRITICAL),
    ]
    assert watch_rows(signals, lambda t: t == CUSTOM) == ["n-c", "n-d"]


@given(st.lists(st.sampled_from(["n1", "n2", "n3", "n4"]), max_size=8))
def test_watch_rows_are_sorted_and_unique(nids: list[str]) -> None:
    signals = [Receipt(n, "u1", ReceiptStatus.DELIVERED, at=T0) for n in nids]
    assert watch_rows(signals, lambda _: False) == sorted(set(nids))
