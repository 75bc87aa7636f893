"""Sends no provider was asked to take do not use up the retry schedule; they slow down and the
schedule's own wall time ends them."""

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
    longest_run,
    plan_retry,
    run_bound,
    step_of,
    tries_of,
    was_attempted,
)
from consumers.scheduler.store import Timer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PUSH = [5.0, 30.0, 120.0, 600.0]
SCHEDULES = {"push": PUSH}
JITTER = 0.2
BOUND = run_bound(PUSH, JITTER)  # 906 s: the schedule's 755 s at its longest jitter
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
    attempt: int,
    reason: str | None,
    before: Tries | None,
    now: datetime,
    *,
    rand: float = 0.5,
    retry_after_ms: int | None = None,
) -> Timer | None:
    return plan_retry(
        _failed(attempt, reason, retry_after_ms),
        SCHEDULES,
        jitter=JITTER,
        now=now,
        rand=rand,
        topics=TOPICS,
        codec=CODEC,
        before=before,
    )


def _run(
    attempted: list[bool], rands: list[float] | None = None, retry_after_ms: int | None = None
) -> tuple[int, list[Timer]]:
    """Send, fail as told (the last answer again once the list runs out), re-send when the timer
    says, until the run ends: the sends made and the timers armed."""
    attempt, before, now = 1, None, NOW
    timers: list[Timer] = []
    while True:
        real = attempted[min(attempt, len(attempted)) - 1]
        rand = rands[(attempt - 1) % len(rands)] if rands else 0.5
        timer = _plan(
            attempt, None if real else "circuit_open", before, now, rand=rand, retry_after_ms=retry_after_ms
        )
        if timer is None:
            return attempt, timers
        timers.append(timer)
        before, now, attempt = tries_of(timer.data), timer.due_at, attempt + 1
        assert attempt < 1000, "the run never ended"


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


# Sends per message, whatever the mix of real tries and sends not attempted (open breakers),
# the jitter's draws and a breaker's Retry-After: at most the schedule's steps + 1 real tries,
# and the sends not attempted fit in the schedule's wall time at half a step each. 10 for push
# (all sends not attempted, every draw at the shortest jitter: 4+4+4+24+24+96+96+480+480 s, the
# tenth send at 1,212 s > 906 s); 3 x steps + 2 = 14 bounds every mix, and some mix reaches it
# (every mix of up to 14 answers tried at the shortest jitter). Before: one send per 15 s (the
# breaker's Retry-After) for a day, 5,760.
MAX_SENDS = 3 * len(PUSH) + 2


@given(
    st.lists(st.booleans(), min_size=1, max_size=40),
    st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8),
    st.sampled_from([None, 1_000, 15_000]),
)
def test_every_mix_makes_few_sends(
    attempted: list[bool], rands: list[float], retry_after_ms: int | None
) -> None:
    sends, timers = _run(attempted, rands, retry_after_ms)
    assert sends <= MAX_SENDS
    real = [a for a, _ in zip(attempted + [attempted[-1]] * sends, range(sends), strict=False) if a]
    assert len(real) <= len(PUSH) + 1
    for timer in timers:
        assert timer.data["tried"] <= len(PUSH)
        assert timer.data["since"] == NOW.isoformat()


def test_an_outage_spent_on_open_breakers_makes_ten_sends_at_most() -> None:
    sends, timers = _run([False], [0.0])
    assert sends == 10
    # the ninth send failed inside the schedule's wall time, the tenth after it: exhausted
    assert timers[-2].due_at - NOW < BOUND <= timers[-1].due_at - NOW == timedelta(seconds=1212)


@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_only_real_tries_use_up_the_schedule(attempted: list[bool]) -> None:
    # A run ends on a real try once the schedule's steps are used up (first send + one per step),
    # or once the schedule's wall time has passed: never earlier, and never on a send not
    # attempted inside that time.
    sends, timers = _run(attempted)
    last_real = attempted[min(sends, len(attempted)) - 1]
    real = sum(attempted[min(n, len(attempted)) - 1] for n in range(1, sends + 1))
    last_due = timers[-1].due_at if timers else NOW
    if last_due - NOW < BOUND:
        assert last_real and real == len(PUSH) + 1
    else:
        assert real <= len(PUSH) + 1


@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_each_wait_is_its_step(attempted: list[bool]) -> None:
    # One step per real try, one per two sends not attempted, within the schedule.
    _, timers = _run(attempted)
    due = NOW
    for i, timer in enumerate(timers):
        tries = tries_of(timer.data)
        assert tries is not None
        step = PUSH[min(max(tries.tried + tries.skipped // 2, 1), len(PUSH)) - 1]
        assert timer.due_at - due == timedelta(seconds=step), i
        due = timer.due_at


def test_step_of() -> None:
    assert [step_of(Tries(0, NOW, s), 4) for s in range(10)] == [1, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [step_of(Tries(t, NOW, 0), 4) for t in range(1, 6)] == [1, 2, 3, 4, 4]
    assert step_of(Tries(2, NOW, 3), 4) == 3


def test_every_send_attempted_keeps_the_schedule_of_before() -> None:
    # Threading the recorded tries changes nothing when every send reached a provider.
    _, threaded = _run([True] * 10)
    legacy = [
        _plan(a, None, None, t.due_at - timedelta(seconds=PUSH[a - 1])) for a, t in enumerate(threaded, 1)
    ]
    assert [(t.key, t.due_at) for t in threaded] == [(t.key, t.due_at) for t in legacy if t is not None]
    assert len(threaded) == len(PUSH)


def test_an_outage_is_bounded_by_the_schedules_wall_time() -> None:
    before = Tries(1, NOW, 3)
    assert _plan(40, "circuit_open", before, NOW + BOUND - timedelta(seconds=1)) is not None
    assert _plan(40, "circuit_open", before, NOW + BOUND) is None
    # attempted or not: a real refusal after the bound (Retry-After stretched the run) ends it too
    assert _plan(41, None, before, NOW + BOUND - timedelta(seconds=1)) is not None
    assert _plan(41, None, before, NOW + BOUND) is None
    # and the last retry is sent no later than the bound plus the longest step
    timer = _plan(41, None, before, NOW + BOUND - timedelta(seconds=1), rand=0.999, retry_after_ms=10**9)
    assert timer is not None and timer.due_at <= NOW + longest_run(PUSH, JITTER)


def test_each_send_has_its_own_timer_key_and_attempt() -> None:
    _, timers = _run([False])
    n = len(timers)
    assert len({t.key for t in timers}) == n
    assert [CODEC.decode(t.payload or b"", ChannelMessage).attempt for t in timers] == list(range(2, n + 2))
    assert {t.data["tried"] for t in timers} == {0}
    assert [t.data["skipped"] for t in timers] == list(range(1, n + 1))


def test_a_breakers_retry_after_is_a_floor() -> None:
    timer = plan_retry(
        _failed(1, "circuit_open", retry_after_ms=25_000),
        SCHEDULES,
        jitter=0.0,
        now=NOW,
        rand=0.5,
        topics=TOPICS,
        codec=CODEC,
    )
    assert timer is not None and timer.due_at == NOW + timedelta(seconds=25)


def test_a_timer_armed_before_counts_every_earlier_send() -> None:
    assert tries_of({"tenant": "", "attempt": 3}) is None
    assert count_tries(3, None, attempted=False, now=NOW) == Tries(2, NOW, 1)
    assert count_tries(3, None, attempted=True, now=NOW) == Tries(3, NOW)
    recorded = Tries(1, NOW - timedelta(hours=1))
    assert count_tries(9, recorded, attempted=True, now=NOW) == dataclasses.replace(recorded, tried=2)
    assert tries_of({"tried": 1, "since": recorded.since.isoformat()}) == recorded
    assert tries_of({"tried": 1, "skipped": 4, "since": recorded.since.isoformat()}) == Tries(
        1, recorded.since, 4
    )
