"""The retry planner: schedules as tables, jitter bounds, Retry-After floors, the planned timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.infra.keys import idempotency_key, notification_id, outcome_id
from consumers.infra.settings import FallbackSettings
from consumers.runtime.topics import Topics
from consumers.scheduler.retries import next_delay, plan_retry, retry_timer_key
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier

WEBHOOK = [5, 300, 1800, 7200, 18000, 36000, 36000]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.5, 5.0),  # rand 0.5 = no jitter
        (2, 0.5, 300.0),
        (3, 0.5, 1800.0),
        (4, 0.5, 7200.0),
        (5, 0.5, 18000.0),
        (6, 0.5, 36000.0),
        (7, 0.5, 36000.0),
        (8, 0.5, None),  # schedule used up after the 8th attempt
        (9, 0.5, None),
        (1, 0.0, 4.0),  # -20 %
        (2, 0.0, 240.0),
        (2, 0.75, 330.0),  # +10 %
        (7, 0.0, 28800.0),
    ],
)
def test_webhook_schedule_table(attempt: int, rand: float, expected: float | None) -> None:
    got = next_delay(attempt, WEBHOOK, jitter=0.2, rand=rand)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_default_webhook_schedule_is_the_issue_schedule() -> None:
    assert FallbackSettings().retry_schedules_s["webhook"] == WEBHOOK
    assert FallbackSettings().retry_jitter == 0.2


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 60.0, 60.0),  # provider asks for more than the step: honoured
        (2, 60.0, 300.0),  # provider asks for less: the schedule wins (a floor, not an override)
        (1, 0.0, 5.0),
        (1, -3.0, 5.0),  # nonsense ignored
        (1, 10**9, 36000.0),  # clamped to the schedule's longest step
        (8, 60.0, None),  # Retry-After never revives an exhausted schedule
    ],
)
def test_retry_after_is_a_clamped_floor(attempt: int, retry_after: float, expected: float | None) -> None:
    got = next_delay(attempt, WEBHOOK, jitter=0.2, rand=0.5, retry_after=retry_after)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("attempt", "jitter", "rand"),
    [(0, 0.2, 0.5), (-1, 0.2, 0.5), (1, -0.1, 0.5), (1, 1.0, 0.5), (1, 0.2, 1.0), (1, 0.2, -0.01)],
)
def test_bad_arguments_are_refused(attempt: int, jitter: float, rand: float) -> None:
    with pytest.raises(ValueError):
        next_delay(attempt, WEBHOOK, jitter=jitter, rand=rand)


def test_empty_schedule_means_no_retry() -> None:
    assert next_delay(1, [], jitter=0.2, rand=0.5) is None


@given(
    attempt=st.integers(1, 7),
    rand=st.floats(0.0, 1.0, exclude_max=True),
    jitter=st.floats(0.0, 0.99),
)
def test_jitter_stays_within_bounds(attempt: int, rand: float, jitter: float) -> None:
    step = WEBHOOK[attempt - 1]
    got = next_delay(attempt, WEBHOOK, jitter=jitter, rand=rand)
    assert got is not None
    assert step * (1 - jitter) - 1e-9 <= got <= step * (1 + jitter) + 1e-9


@given(rand=st.floats(0.0, 1.0, exclude_max=True))
def test_jitter_is_monotonic_in_rand_and_zero_jitter_is_exact(rand: float) -> None:
    assert next_delay(3, WEBHOOK, jitter=0.0, rand=rand) == 1800.0


def _message(channel: Channel = Channel.WEBHOOK, attempt: int = 1, **kw: object) -> ChannelMessage:
    recipient = "ep_1" if channel == Channel.WEBHOOK else "u1"
    return ChannelMessage(
        notification_id=notification_id("e1", "owner1"),
        event_id="e1",
        event_type="system.invoice_paid",
        user_id="owner1",
        channel=channel,
        lane=Lane.PRIORITY,
        tier=Tier.SYSTEM,
        category="system",
        recipient=recipient,
        template="",
        locale="en",
        idempotency_key=idempotency_key("e1", channel.value, recipient),
        occurred_at=NOW,
        payload='{"invoice": 7}',
        attempt=attempt,
        **kw,  # type: ignore[arg-type]
    )


def _failed(
    message: ChannelMessage | None,
    attempt: int = 1,
    retry_after_ms: int | None = None,
    status: OutcomeStatus = OutcomeStatus.FAILED_RETRYABLE,
) -> DeliveryOutcome:
    key = message.idempotency_key if message else "k"
    return DeliveryOutcome(
        outcome_id=outcome_id(key, status.value, attempt),
        notification_id=message.notification_id if message else "n",
        event_id="e1",
        event_type="system.invoice_paid",
        user_id="owner1",
        tier=Tier.SYSTEM,
        status=status,
        occurred_at=NOW,
        channel=message.channel if message else Channel.WEBHOOK,
        lane=Lane.PRIORITY,
        attempt=attempt,
        retry_after_ms=retry_after_ms,
        idempotency_key=key,
        message=message,
    )


SCHEDULES = FallbackSettings().retry_schedules_s


def test_plan_retry_resends_same_key_with_next_attempt() -> None:
    topics, codec = Topics("px"), default_codec()
    msg = _message(attempt=3)
    timer = plan_retry(
        _failed(msg, attempt=3), SCHEDULES, jitter=0.2, now=NOW, rand=0.5, topics=topics, codec=codec
    )
    assert timer is not None
    assert timer.kind == "retry"
    assert timer.due_at == NOW + timedelta(seconds=1800)
    assert timer.topic == "px.channel.webhook.priority"
    assert timer.msg_key == b"ep_1"  # webhook: keyed by endpoint id
    assert timer.key == retry_timer_key(msg.idempotency_key, 4)
    assert timer.payload is not None
    sent = codec.decode(timer.payload, ChannelMessage)
    assert sent.attempt == 4
    assert sent.idempotency_key == msg.idempotency_key
    assert sent.payload == msg.payload and sent.recipient == msg.recipient
    assert msg.attempt == 3  # the input is not mutated
    assert timer.data["tenant"] == ""  # the default tenant's: erasure goes by (tenant, user)


def test_plan_retry_names_the_tenant() -> None:
    msg = _message(tenant="acme")
    timer = plan_retry(
        _failed(msg), SCHEDULES, jitter=0.0, now=NOW, rand=0.5, topics=Topics("px"), codec=default_codec()
    )
    assert timer is not None and timer.data["tenant"] == "acme"


def test_plan_retry_is_deterministic_for_replays() -> None:
    args = {"jitter": 0.2, "now": NOW, "rand": 0.3, "topics": Topics("px"), "codec": default_codec()}
    a = plan_retry(_failed(_message()), SCHEDULES, **args)  # type: ignore[arg-type]
    b = plan_retry(_failed(_message()), SCHEDULES, **args)  # type: ignore[arg-type]
    assert a is not None and b is not None
    assert (a.key, a.due_at, a.payload) == (b.key, b.due_at, b.payload)


def test_other_channels_are_keyed_by_user() -> None:
    timer = plan_retry(
        _failed(_message(Channel.PUSH)),
        SCHEDULES,
        jitter=0.2,
        now=NOW,
        rand=0.5,
        topics=Topics("px"),
        codec=default_codec(),
    )
    assert timer is not None
    assert timer.msg_key == b"owner1" and timer.topic == "px.channel.push.priority"
    assert timer.due_at == NOW + timedelta(seconds=5)


def test_plan_retry_honours_retry_after_ms() -> None:
    timer = plan_retry(
        _failed(_message(), retry_after_ms=120_000),
        SCHEDULES,
        jitter=0.2,
        now=NOW,
        rand=0.5,
        topics=Topics("px"),
        codec=default_codec(),
    )
    assert timer is not None and timer.due_at == NOW + timedelta(seconds=120)


@pytest.mark.parametrize("attempt", [8, 9, 20])
def test_plan_retry_exhausts(attempt: int) -> None:
    assert (
        plan_retry(
            _failed(_message(attempt=attempt), attempt=attempt),
            SCHEDULES,
            jitter=0.2,
            now=NOW,
            rand=0.5,
            topics=Topics("px"),
            codec=default_codec(),
        )
        is None
    )


def test_plan_retry_uses_the_higher_of_outcome_and_message_attempt() -> None:
    # A consumer that forgot to copy the attempt onto the outcome must not restart the schedule.
    timer = plan_retry(
        _failed(_message(attempt=8), attempt=1),
        SCHEDULES,
        jitter=0.2,
        now=NOW,
        rand=0.5,
        topics=Topics("px"),
        codec=default_codec(),
    )
    assert timer is None


def test_no_schedule_for_channel_means_exhausted() -> None:
    assert (
        plan_retry(
            _failed(_message()),
            {"push": [1]},
            jitter=0.2,
            now=NOW,
            rand=0.5,
            topics=Topics("px"),
            codec=default_codec(),
        )
        is None
    )


def test_retry_after_expiry_is_not_planned() -> None:
    soon = _message(expires_at=NOW + timedelta(seconds=4))
    assert (
        plan_retry(
            _failed(soon),
            SCHEDULES,
            jitter=0.2,
            now=NOW,
            rand=0.5,
            topics=Topics("px"),
            codec=default_codec(),
        )
        is None
    )
    later = _message(expires_at=NOW + timedelta(seconds=6))
    assert (
        plan_retry(
            _failed(later),
            SCHEDULES,
            jitter=0.2,
            now=NOW,
            rand=0.5,
            topics=Topics("px"),
            codec=default_codec(),
        )
        is not None
    )


def test_contract_violations_raise() -> None:
    with pytest.raises(ValueError, match="no message"):
        plan_retry(
            _failed(None),
            SCHEDULES,
            jitter=0.2,
            now=NOW,
            rand=0.5,
            topics=Topics("px"),
            codec=default_codec(),
        )
    with pytest.raises(ValueError, match="failed_retryable"):
        plan_retry(
            _failed(_message(), status=OutcomeStatus.SENT),
            SCHEDULES,
            jitter=0.2,
            now=NOW,
            rand=0.5,
            topics=Topics("px"),
            codec=default_codec(),
        )


def test_plan_retry_carries_opt_in_for_the_consent_check_at_release() -> None:
    args = {"jitter": 0.0, "now": NOW, "rand": 0.5, "topics": Topics("px"), "codec": default_codec()}
    opted = plan_retry(_failed(_message(Channel.PUSH)), SCHEDULES, opt_in=True, **args)  # type: ignore[arg-type]
    plain = plan_retry(_failed(_message(Channel.PUSH)), SCHEDULES, **args)  # type: ignore[arg-type]
    assert opted is not None and opted.data["opt_in"] is True
    assert plain is not None and "opt_in" not in plain.data
