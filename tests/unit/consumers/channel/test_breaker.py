"""The circuit breaker's state machine, driven by an injected clock: tables and hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.channel.breaker import (
    BreakerPolicy,
    BreakerState,
    Circuit,
    Result,
    admit,
    record,
    retry_in,
)

POLICY = BreakerPolicy(
    consecutive_failures=3, error_rate=0.5, min_calls=10, window_s=30.0, open_s=10.0, half_open_probes=2
)
CLOSED = BreakerState(window_start=0.0)


def run(
    results: list[Result], *, state: BreakerState = CLOSED, t0: float = 0.0, step: float = 0.1
) -> BreakerState:
    now = t0
    for result in results:
        state, allowed = admit(state, POLICY, now)
        if allowed:
            state = record(state, POLICY, now, result)
        now += step
    return state


def test_opens_after_n_consecutive_retryable_failures() -> None:
    assert run([Result.RETRYABLE] * 2).circuit is Circuit.CLOSED
    assert run([Result.RETRYABLE] * 3).circuit is Circuit.OPEN


def test_a_success_resets_the_consecutive_count() -> None:
    state = run([Result.RETRYABLE, Result.RETRYABLE, Result.SUCCESS, Result.RETRYABLE, Result.RETRYABLE])
    assert state.circuit is Circuit.CLOSED
    assert state.consecutive == 2


def test_opens_on_error_rate_once_the_window_holds_min_calls() -> None:
    alternating = [Result.RETRYABLE, Result.SUCCESS] * 4  # 8 calls, 50 %, never 3 in a row
    assert run(alternating).circuit is Circuit.CLOSED  # below min_calls
    assert run([*alternating, Result.SUCCESS, Result.RETRYABLE]).circuit is Circuit.OPEN  # 10 calls, 5 failed


def test_an_ignored_result_counts_as_neither_failure_nor_success() -> None:
    # A tenant's sender refused (tenant_sender_config): a flood of them must neither open the
    # breaker nor reset the count of the provider's own failures, nor dilute its error rate.
    assert run([Result.IGNORED] * 50).circuit is Circuit.CLOSED
    state = run([Result.RETRYABLE, Result.RETRYABLE, *[Result.IGNORED] * 20, Result.RETRYABLE])
    assert state.circuit is Circuit.OPEN
    alternating = [Result.RETRYABLE, Result.SUCCESS] * 4
    diluted = [*alternating, *[Result.IGNORED] * 40, Result.SUCCESS, Result.RETRYABLE]
    assert run(diluted).circuit is Circuit.OPEN  # still 10 calls, 5 failed
    assert record(CLOSED, POLICY, 1.0, Result.IGNORED) == CLOSED


def test_an_ignored_probe_gives_its_slot_back() -> None:
    state = BreakerState(Circuit.HALF_OPEN, since=100.0, probes=2, probe_since=100.0)
    assert not admit(state, POLICY, 100.1)[1]
    state = record(state, POLICY, 100.2, Result.IGNORED)
    assert state.circuit is Circuit.HALF_OPEN and (state.probes, state.successes) == (1, 0)
    state, ok = admit(state, POLICY, 100.3)
    assert ok  # the next call probes instead
    state = record(record(state, POLICY, 100.4, Result.SUCCESS), POLICY, 100.5, Result.SUCCESS)
    assert state.circuit is Circuit.CLOSED


def test_the_error_rate_window_restarts() -> None:
    # 4 failures early, then a new window: the old ones no longer count.
    state = run([Result.RETRYABLE, Result.SUCCESS] * 4, step=1.0)
    state = record(state, POLICY, 31.0, Result.SUCCESS)
    assert (state.calls, state.failures) == (1, 0)


def test_open_refuses_until_open_s_then_lets_probes_through() -> None:
    opened = run([Result.RETRYABLE] * 3)
    since = opened.since
    assert admit(opened, POLICY, since + 9.99) == (opened, False)
    assert retry_in(opened, POLICY, since + 4.0) == pytest.approx(6.0)
    state, ok = admit(opened, POLICY, since + 10.0)
    assert ok and state.circuit is Circuit.HALF_OPEN and state.probes == 1
    state, ok = admit(state, POLICY, since + 10.1)
    assert ok and state.probes == 2
    state, ok = admit(state, POLICY, since + 10.2)
    assert not ok  # two probes in flight: the third waits


def test_half_open_closes_after_enough_successful_probes() -> None:
    state = BreakerState(Circuit.HALF_OPEN, since=100.0, probes=2, probe_since=100.0)
    state = record(state, POLICY, 100.5, Result.SUCCESS)
    assert state.circuit is Circuit.HALF_OPEN
    state = record(state, POLICY, 100.6, Result.PERMANENT)  # the provider answered: it is up
    assert state.circuit is Circuit.CLOSED
    assert (state.calls, state.failures, state.consecutive) == (0, 0, 0)


def test_a_failed_probe_reopens_and_restarts_the_clock() -> None:
    state = BreakerState(Circuit.HALF_OPEN, since=100.0, probes=1, probe_since=100.0)
    state = record(state, POLICY, 101.0, Result.RETRYABLE)
    assert state.circuit is Circuit.OPEN and state.since == 101.0
    assert not admit(state, POLICY, 110.9)[1]


def test_probes_that_never_report_free_their_slots_after_open_s() -> None:
    state = BreakerState(Circuit.HALF_OPEN, since=100.0, probes=2, probe_since=100.0)
    assert not admit(state, POLICY, 109.0)[1]
    state, ok = admit(state, POLICY, 110.0)
    assert ok and state.probes == 1


def test_late_results_while_open_change_nothing() -> None:
    opened = BreakerState(Circuit.OPEN, since=5.0)
    for result in Result:
        assert record(opened, POLICY, 6.0, result) == opened


def test_state_survives_json() -> None:
    state = BreakerState(Circuit.HALF_OPEN, since=1.5, probes=2, probe_since=1.5, successes=1)
    assert BreakerState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    "kwargs",
    [
        {"consecutive_failures": 0},
        {"min_calls": 0},
        {"half_open_probes": 0},
        {"error_rate": 0.0},
        {"error_rate": 1.5},
        {"open_s": 0.0},
        {"window_s": -1.0},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


# -- properties ------------------------------------------------------------------------------
results = st.sampled_from(list(Result))
ops = st.lists(st.tuples(st.floats(0.0, 20.0), st.booleans(), results), max_size=120)


@settings(max_examples=400)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.sampled_from([Result.SUCCESS, Result.PERMANENT])), max_size=200
    )
)
def test_permanent_errors_and_successes_never_trip_it(seq: list[tuple[float, Result]]) -> None:
    state, now = CLOSED, 0.0
    for gap, result in seq:
        now += gap
        state, ok = admit(state, POLICY, now)
        assert ok
        state = record(state, POLICY, now, result)
        assert state.circuit is Circuit.CLOSED


@settings(max_examples=600)
@given(ops)
def test_invariants_under_any_interleaving(seq: list[tuple[float, bool, Result]]) -> None:
    """Any sequence of admits and results, time moving forward: the machine stays consistent."""
    state, now = CLOSED, 0.0
    for gap, is_admit, result in seq:
        now += gap
        before = state
        if is_admit:
            state, ok = admit(state, POLICY, now)
            if before.circuit is Circuit.OPEN:
                # open refuses exactly until open_s has passed
                assert ok == (now - before.since >= POLICY.open_s)
            if before.circuit is Circuit.CLOSED:
                assert ok and state == before
        else:
            state = record(state, POLICY, now, result)
            if before.circuit is Circuit.CLOSED and result is not Result.RETRYABLE:
                assert state.circuit is Circuit.CLOSED
            if result is Result.IGNORED and before.circuit is not Circuit.HALF_OPEN:
                assert state == before  # counted nowhere
            if before.circuit is Circuit.HALF_OPEN and result is Result.RETRYABLE:
                assert state.circuit is Circuit.OPEN and state.since == now
        assert state.probes <= POLICY.half_open_probes
        assert state.consecutive < POLICY.consecutive_failures
        assert state.failures <= state.calls
        if state.circuit is not Circuit.CLOSED:
            assert (state.calls, state.failures, state.consecutive) == (0, 0, 0)
        assert BreakerState.from_json(state.to_json()) == state


@settings(max_examples=300)
@given(st.integers(1, 8), st.integers(1, 5), st.floats(0.5, 60.0))
def test_full_cycle_for_any_policy(n: int, probes: int, open_s: float) -> None:
    policy = BreakerPolicy(consecutive_failures=n, min_calls=1000, open_s=open_s, half_open_probes=probes)
    state, now = BreakerState(), 0.0
    for _ in range(n):
        state, ok = admit(state, policy, now)
        assert ok
        state = record(state, policy, now, Result.RETRYABLE)
    assert state.circuit is Circuit.OPEN
    assert not admit(state, policy, now + open_s * 0.99)[1]
    now += open_s
    for _ in range(probes):
        state, ok = admit(state, policy, now)
        assert ok
    assert not admit(state, policy, now)[1]
    for _ in range(probes):
        state = record(state, policy, now, Result.SUCCESS)
    assert state.circuit is Circuit.CLOSED
