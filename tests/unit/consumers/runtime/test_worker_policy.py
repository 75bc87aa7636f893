"""When a supervisor restarts a dead worker, and when it gives up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.worker_policy import RestartPolicy, restart_delay

POLICY = RestartPolicy(max_restarts=3, window_s=60.0, base_delay_s=0.5, max_delay_s=4.0)


def test_the_first_exit_restarts_after_the_base_delay() -> None:
    assert restart_delay(POLICY, [100.0], 100.0) == 0.5


def test_exits_in_quick_succession_wait_longer_each_time() -> None:
    assert [restart_delay(POLICY, [0.0, 1.0, 2.0][:n], 2.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_one_exit_too_many_within_the_window_gives_up() -> None:
    assert restart_delay(POLICY, [0.0, 1.0, 2.0, 3.0], 3.0) is None


def test_exits_older_than_the_window_are_forgiven() -> None:
    assert restart_delay(POLICY, [0.0, 1.0, 2.0, 70.0], 70.0) == 0.5


@given(st.lists(st.floats(0, 1000), max_size=20), st.floats(0, 2000))
def test_a_delay_is_bounded_and_giving_up_means_more_than_max_restarts_recent(
    exits: list[float], now: float
) -> None:
    exits = sorted(t for t in exits if t <= now)
    delay = restart_delay(POLICY, exits, now)
    recent = sum(1 for t in exits if now - t <= POLICY.window_s)
    if recent > POLICY.max_restarts:
        assert delay is None
    else:
        assert delay is not None and POLICY.base_delay_s <= delay <= POLICY.max_delay_s
