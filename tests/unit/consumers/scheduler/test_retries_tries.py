"""Sends no provider was asked to take do not use up the retry schedule; they slow down (doubling
past the schedule up to an hour), and the run's age ends them: the schedule's own wall time where
exhaustion escalates, the unattempted max age elsewhere. Real tries end a run only by their number."""

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
    wait_of,
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
    attempt: int,
    reason: str | None,
    before: Tries | None,
    now: datetime,
    *,
    rand: float = 0.5,
    retry_after_ms: int | None = None,
    escalates: bool = True,
    max_age_s: float = DAY,
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
        escalates=escalates,
        max_age_s=max_age_s,
    )


def _run(
    attempted: list[bool],
    rands: list[float] | None = None,
    retry_after_ms: int | None = None,
    *,
    escalates: bool = True,
    max_age_s: float = DAY,
) -> tuple[int, list[Timer]]:
    """Send, fail as told (the last answer again once the list runs out), re-send when the timer
    says, until the run ends: the sends made and the timers armed."""
    attempt, before, now = 1, None, NOW
    timers: list[Timer] = []
    while True:
        real = attempted[min(attempt, len(attempted)) - 1]
        rand = rands[(attempt - 1) % len(rands)] if rands else 0.5
        timer = _plan(
            attempt,
            None if real else "circuit_open",
            before,
            now,
            rand=rand,
            retry_after_ms=retry_after_ms,
            escalates=escalates,
            max_age_s=max_age_s,
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


# Escalating (a high-tier push): sends not attempted end at the schedule's wall time (all sends
# not attempted, every draw at the shortest jitter: 4+4+4+24+24+96+96+480+480 s, the tenth send at
# 1,212 s > 906 s). Real tries are not cut short by it: at most one per step after it.
MAX_SENDS = 3 * len(PUSH) + 2 + len(PUSH)


def _attempted(attempted: list[bool], send: int) -> bool:
    return attempted[min(send, len(attempted)) - 1]


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
    real = sum(_attempted(attempted, n) for n in range(1, sends + 1))
    assert real <= len(PUSH) + 1
    for timer in timers:
        assert timer.data["tried"] <= len(PUSH)
        assert timer.data["since"] == NOW.isoformat()


def test_an_outage_spent_on_open_breakers_makes_ten_sends_at_most() -> None:
    sends, timers = _run([False], [0.0])
    assert sends == 10
    # the ninth send failed inside the schedule's wall time, the tenth after it: exhausted
    assert timers[-2].due_at - NOW < BOUND <= timers[-1].due_at - NOW == timedelta(seconds=1212)


@pytest.mark.parametrize("escalates", [True, False])
@given(attempted=st.lists(st.booleans(), min_size=1, max_size=40))
def test_only_real_tries_use_up_the_schedule(escalates: bool, attempted: list[bool]) -> None:
    # A run ends on a real try once the schedule's steps are used up (first send + one per step),
    # whenever that is; on a send not attempted only once the run is old enough.
    max_age = 7_200.0
    sends, timers = _run(attempted, escalates=escalates, max_age_s=max_age)
    real = sum(_attempted(attempted, n) for n in range(1, sends + 1))
    last_due = timers[-1].due_at - NOW if timers else timedelta(0)
    if _attempted(attempted, sends):
        assert real == len(PUSH) + 1
    else:
        assert real <= len(PUSH)
        assert last_due >= (BOUND if escalates else timedelta(seconds=max_age))


@pytest.mark.parametrize("escalates", [True, False])
@given(
    attempted=st.lists(st.booleans(), min_size=1, max_size=60),
    rands=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8),
    retry_after_ms=st.sampled_from([None, 15_000, 10**9]),
)
def test_the_last_send_is_within_the_longest_run(
    escalates: bool, attempted: list[bool], rands: list[float], retry_after_ms: int | None
) -> None:
    # what the delivery ledger must remember a key for (consumers/channel/process.py)
    max_age = 7_200.0
    _, timers = _run(attempted, rands, retry_after_ms, escalates=escalates, max_age_s=max_age)
    for timer in timers:
        assert timer.due_at - NOW <= longest_run(PUSH, JITTER, max_age)


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_each_wait_is_its_step(attempted: list[bool]) -> None:
    # One step per real try, one per two sends not attempted, within the schedule; a send not
    # attempted past it waits the last step doubled per step beyond, up to an hour.
    _, timers = _run(attempted, escalates=False, max_age_s=DAY)
    due = NOW
    for send, timer in enumerate(timers, 1):
        tries = tries_of(timer.data)
        assert tries is not None
        number = max(tries.tried + tries.skipped // 2, 1)
        if _attempted(attempted, send) or number <= len(PUSH):
            step = PUSH[min(number, len(PUSH)) - 1]
        else:
            step = min(PUSH[-1] * 2 ** (number - len(PUSH)), 3600.0)
        assert timer.due_at - due == timedelta(seconds=step), send
        due = timer.due_at


# Not escalating (a normal email, a webhook): an outage shorter than the max age ends no message
# exhausted, and costs few sends: at the shortest jitter, every wait past the ramp is 2,880 s.
SENDS_PER_DAY = 42


@given(
    st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8),
    st.sampled_from([None, 1_000, 15_000]),
)
def test_a_day_long_outage_costs_a_few_dozen_sends(rands: list[float], retry_after_ms: int | None) -> None:
    sends, timers = _run([False], rands, retry_after_ms, escalates=False, max_age_s=DAY)
    assert sends <= SENDS_PER_DAY
    # it ended once the max age had passed, not earlier
    assert timers[-1].due_at - NOW >= timedelta(seconds=DAY)


def test_the_day_figure_is_reached() -> None:
    sends, _ = _run([False], [0.0], escalates=False, max_age_s=DAY)
    assert sends == SENDS_PER_DAY


def test_wait_of_doubles_past_the_schedule() -> None:
    waits = [wait_of(Tries(0, NOW, s), PUSH, grows=True)[0] for s in range(0, 20, 2)]
    assert waits == [5.0, 5.0, 30.0, 120.0, 600.0, 1200.0, 2400.0, 3600.0, 3600.0, 3600.0]
    # a real try, or an escalating run, keeps the schedule's longest step; a schedule longer
    # than an hour keeps its own
    assert wait_of(Tries(1, NOW, 18), PUSH, grows=False) == (600.0, 600.0)
    assert wait_of(Tries(0, NOW, 40), [5.0, 36_000.0], grows=True) == (36_000.0, 36_000.0)


@given(
    st.lists(st.booleans(), min_size=1, max_size=40),
    st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8),
    st.sampled_from([None, 15_000, 10**9]),
)
def test_an_escalating_outage_ends_within_the_bound_and_a_step(
    attempted: list[bool], rands: list[float], retry_after_ms: int | None
) -> None:
    # docs/fallback.md: a high-tier push escalates by 906 + 600 s when no send reaches FCM; each
    # real try after the bound (a breaker's probe) may add a step, at most one per step.
    _, timers = _run(attempted, rands, retry_after_ms)
    last = timers[-1].due_at - NOW if timers else timedelta(0)
    late_real = sum(_attempted(attempted, n + 2) for n, t in enumerate(timers) if t.due_at - NOW > BOUND)
    assert last <= BOUND + timedelta(seconds=PUSH[-1] * (1 + late_real))
    if len(attempted) > 1 and not any(attempted[1:]):  # no real try after the first send
        assert last <= BOUND + timedelta(seconds=PUSH[-1])


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


def test_an_escalating_outage_is_bounded_by_the_schedules_wall_time() -> None:
    before = Tries(1, NOW, 3)
    assert _plan(40, "circuit_open", before, NOW + BOUND - timedelta(seconds=1)) is not None
    assert _plan(40, "circuit_open", before, NOW + BOUND) is None
    # a real try is not cut short by the run's age (a backlog, a scheduler outage)
    assert _plan(41, None, before, NOW + timedelta(days=3)) is not None
    assert _plan(41, None, Tries(len(PUSH), NOW), NOW + timedelta(seconds=1)) is None


def test_elsewhere_sends_not_attempted_go_on_until_the_max_age() -> None:
    before = Tries(1, NOW, 3)
    day = timedelta(seconds=DAY)
    assert _plan(40, "circuit_open", before, NOW + BOUND, escalates=False) is not None
    assert _plan(40, "circuit_open", before, NOW + day - timedelta(seconds=1), escalates=False) is not None
    assert _plan(40, "circuit_open", before, NOW + day, escalates=False) is None


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
