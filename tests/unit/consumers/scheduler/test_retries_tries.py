"""Sends no provider was asked to take do not use up the retry schedule; the age bound ends them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.infra.keys import idempotency_key, notification_id, outcome_id
from consumers.runtime.topics import Topics
from consumers.scheduler.retries import (
    NOT_ATTEMPTED,
    Tries,
    count_tries,
    plan_retry,
    tries_of,
    was_attempted,
)
from consumers.scheduler.store import Timer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PUSH = [5.0, 30.0, 120.0, 600.0]
SCHEDULES = {"push": PUSH}
DAY = 86_400.0
CODEC, TOPICS = default_codec(), Topics("px")


def _message(attempt: int = 1) -> ChannelMessage:
    return ChannelMessage(
        notification_id=notification_id("e1", "u1"),
        event_id="e1",
        event_type="security.login",
        user_id="u1",
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="security",
        recipient="u1",
        template="",
        locale="en",
        idempotency_key=idempotency_key("e1", "push", "u1"),
        occurred_at=NOW,
        attempt=attempt,
    )


def _failed(attempt: int, reason: str | None, retry_after_ms: int | None = None) -> DeliveryOutcome:
    message = _message(attempt)
    return DeliveryOutcome(
        outcome_id=outcome_id(message.idempotency_key, "failed_retryable", attempt),
        notification_id=message.notification_id,
        event_id="e1",
        event_type="security.login",
        user_id="u1",
        tier=Tier.HIGH,
        status=OutcomeStatus.FAILED_RETRYABLE,
        occurred_at=NOW,
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        attempt=attempt,
        reason=reason,
        retry_after_ms=retry_after_ms,
        idempotency_key=message.idempotency_key,
        message=message,
    )


def _plan(
    attempt: int, reason: str | None, before: Tries | None, now: datetime, **kw: object
) -> Timer | None:
    return plan_retry(
        _failed(attempt, reason),
        SCHEDULES,
        jitter=0.0,
        now=now,
        rand=0.5,
        topics=TOPICS,
        codec=CODEC,
        before=before,
        max_age_s=DAY,
        **kw,  # type: ignore[arg-type]
    )


def _run(attempted: list[bool]) -> tuple[int, list[Timer]]:
    """Send, fail as told, re-send when the timer says: the sends made and the timers armed."""
    attempt, before, now = 1, None, NOW
    timers: list[Timer] = []
    for real in attempted:
        timer = _plan(attempt, None if real else "circuit_open", before, now)
        if timer is None:
            return attempt, timers
        timers.append(timer)
        before, now, attempt = tries_of(timer.data), timer.due_at, attempt + 1
    return attempt, timers


@pytest.mark.parametrize(
    ("reason", "attempted"),
    [
        (None, True),
        ("provider_unavailable", True),  # a provider refused it: a real try
        ("provider_timeout", True),
        ("internal_error", True),  # a bug after the call may have been made: counted
        ("circuit_open", False),
        ("recipient_backoff", False),
        ("in_flight_elsewhere", False),
        ("batch_deadline", False),
    ],
)
def test_what_counts_as_a_try(reason: str | None, attempted: bool) -> None:
    assert was_attempted(_failed(1, reason)) is attempted
    assert (reason in NOT_ATTEMPTED) is not attempted


@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_only_real_tries_use_up_the_schedule(attempted: list[bool]) -> None:
    # Whatever mix of open breakers and real failures, the message is exhausted exactly when its
    # real tries ran the schedule (first send + one per step), never on a send not attempted.
    _, timers = _run(attempted)
    real = attempted[: len(timers) + 1].count(True)
    if len(timers) < len(attempted):  # it ended: on a real try past the schedule
        assert attempted[len(timers)] is True
        assert real == len(PUSH) + 1
    else:
        assert real <= len(PUSH)
    for timer in timers:
        assert timer.data["tried"] <= len(PUSH)
        assert timer.data["since"] == NOW.isoformat()


@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_a_send_not_attempted_waits_the_step_of_the_real_tries(attempted: list[bool]) -> None:
    _, timers = _run(attempted)
    due = NOW
    for i, timer in enumerate(timers):
        step = PUSH[max(int(timer.data["tried"]), 1) - 1]
        assert timer.due_at - due == timedelta(seconds=step), i
        due = timer.due_at


def test_every_send_attempted_keeps_the_schedule_of_before() -> None:
    # Threading the recorded tries changes nothing when every send reached a provider.
    _, threaded = _run([True] * 10)
    legacy = [
        _plan(a, None, None, t.due_at - timedelta(seconds=PUSH[a - 1])) for a, t in enumerate(threaded, 1)
    ]
    assert [(t.key, t.due_at) for t in threaded] == [(t.key, t.due_at) for t in legacy if t is not None]
    assert len(threaded) == len(PUSH)


def test_a_long_outage_is_bounded_by_the_age_not_the_schedule() -> None:
    before = Tries(1, NOW)
    assert _plan(40, "circuit_open", before, NOW + timedelta(seconds=DAY - 1)) is not None
    assert _plan(40, "circuit_open", before, NOW + timedelta(seconds=DAY)) is None
    # a real try after the bound still has its step of the schedule
    assert _plan(41, None, before, NOW + timedelta(seconds=DAY + 5)) is not None


def test_each_send_has_its_own_timer_key_and_attempt() -> None:
    _, timers = _run([False] * 6)
    assert len({t.key for t in timers}) == 6
    assert [CODEC.decode(t.payload or b"", ChannelMessage).attempt for t in timers] == [2, 3, 4, 5, 6, 7]
    assert {t.data["tried"] for t in timers} == {0}


def test_a_breakers_retry_after_is_a_floor() -> None:
    timer = plan_retry(
        _failed(1, "circuit_open", retry_after_ms=25_000),
        SCHEDULES,
        jitter=0.0,
        now=NOW,
        rand=0.5,
        topics=TOPICS,
        codec=CODEC,
        max_age_s=DAY,
    )
    assert timer is not None and timer.due_at == NOW + timedelta(seconds=25)


def test_a_timer_armed_before_counts_every_earlier_send() -> None:
    assert tries_of({"tenant": "", "attempt": 3}) is None
    assert count_tries(3, None, attempted=False, now=NOW) == Tries(2, NOW)
    assert count_tries(3, None, attempted=True, now=NOW) == Tries(3, NOW)
    recorded = Tries(1, NOW - timedelta(hours=1))
    assert count_tries(9, recorded, attempted=True, now=NOW) == dataclasses.replace(recorded, tried=2)
    assert tries_of({"tried": 1, "since": recorded.since.isoformat()}) == recorded
