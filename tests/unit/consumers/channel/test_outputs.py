"""The outcome record a channel consumer publishes: the same as DeliveryOutcome.about would build."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.base import Outcome
from consumers.channel.done import IN_FLIGHT_ELSEWHERE, Done, already_sent
from consumers.channel.outputs import OutcomeOutputs
from consumers.infra.clock import ManualClock
from consumers.infra.keys import outcome_id
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, DeliveryOutcome, Lane, OutcomeStatus
from tests.ledger_helpers import message

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

CASES = [
    Done(OutcomeStatus.SENT, Outcome.sent("ses", "m-1")),
    Done(
        OutcomeStatus.FAILED_RETRYABLE,
        Outcome("failed_retryable", "ses", provider_code="Throttling", reason="throttled", retry_after=2.5),
    ),
    Done(OutcomeStatus.FAILED_PERMANENT, reason="template_error", detail="missing variable"),
    already_sent("ses", "m-2"),
    IN_FLIGHT_ELSEWHERE,
]


@pytest.mark.parametrize("done", CASES)
def test_outcome_is_what_about_builds(done: Done) -> None:
    codec = default_codec()
    msg = message("e1", "u1", Channel.EMAIL, at=NOW, attempt=2)
    out = OutcomeOutputs(
        Channel.EMAIL, Lane.PRIORITY, provider="ses", topics=Topics("t"), codec=codec, clock=ManualClock(NOW)
    )(msg, done)
    o = done.outcome
    expected = DeliveryOutcome.about(
        msg,
        done.status,
        outcome_id=outcome_id(msg.idempotency_key, done.status.value, msg.attempt),
        recorded_at=NOW,
        reason=done.reason or (o.reason if o is not None and not o.ok else None),
        detail=done.detail or (o.detail if o is not None else None),
        provider=o.provider if o is not None else "ses",
        provider_message_id=o.provider_message_id if o is not None else None,
        error_code=o.provider_code if o is not None else None,
        retry_after_ms=int(o.retry_after * 1000) if o is not None and o.retry_after is not None else None,
    )
    assert out.topic == "t.outcomes"
    assert out.key == msg.notification_id.encode()
    assert codec.decode(out.value, DeliveryOutcome) == expected
    assert out.value == codec.encode(expected)
