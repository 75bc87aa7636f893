"""Which preset steps a poll runs together, which it fires as done already, which it leaves to the
one-by-one path; and which digest steps join a digest, in which order."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consumers.scheduler.store import Timer
from consumers.workflow.context import KIND_STEP
from consumers.workflow.preset_batch import StateView, join_order, plan_steps

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _timer(key: str, nid: str, step: int = 2) -> Timer:
    return Timer(key, KIND_STEP, T0, data={"notification_id": nid, "step": step})


def _keys(timers: list[Timer]) -> list[str]:
    return [t.key for t in timers]


def test_an_active_preset_at_the_timers_step_runs() -> None:
    run, noop = plan_steps([_timer("a", "n1")], {"n1": StateView("preset:high", 2, "waiting")})
    assert (_keys(run), _keys(noop)) == (["a"], [])


def test_a_step_that_ran_was_cancelled_or_moved_on_fires_without_running() -> None:
    states = {
        "n1": StateView("preset:high", 3, "done"),
        "n2": StateView("preset:medium", 2, "cancelled"),
        "n3": StateView("preset:high", 3, "running"),
    }
    timers = [_timer("a", "n1"), _timer("b", "n2"), _timer("c", "n3")]
    assert plan_steps(timers, states) == ([], timers)


def test_a_routes_own_steps_and_a_missing_state_row_are_left_out() -> None:
    # fire_step handles them one by one: it may start the workflow (step 0) or run a route's steps
    timers = [_timer("a", "n1"), _timer("b", "n2", step=0)]
    assert plan_steps(timers, {"n1": StateView("orders", 2, "running")}) == ([], [])


def test_a_notifications_second_timer_is_left_to_run_after_the_first() -> None:
    # a push's timeout and its failure: one escalation; the second sees what the first wrote
    timers = [_timer("timeout", "n1"), _timer("failed", "n1"), _timer("other", "n2")]
    states = {"n1": StateView("preset:high", 2, "waiting"), "n2": StateView("preset:high", 2, "waiting")}
    run, noop = plan_steps(timers, states)
    assert (_keys(run), _keys(noop)) == (["timeout", "other"], [])


STATES = st.builds(
    StateView,
    st.sampled_from(["preset:high", "preset:medium", "orders"]),
    st.integers(1, 3),
    st.sampled_from(["running", "waiting", "done", "cancelled"]),
)


@given(
    st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3", "n4"]), st.integers(1, 3)), max_size=12),
    st.dictionaries(st.sampled_from(["n1", "n2", "n3", "n4"]), STATES),
)
def test_each_notification_runs_at_most_one_step_and_nothing_is_both_run_and_done(
    specs: list[tuple[str, int]], states: dict[str, StateView]
) -> None:
    timers = [_timer(f"k{i}", nid, step) for i, (nid, step) in enumerate(specs)]
    run, noop = plan_steps(timers, states)
    nids = [str(t.data["notification_id"]) for t in run + noop]
    assert len(nids) == len(set(nids))
    for t in run:
        state = states[str(t.data["notification_id"])]
        assert state.route.startswith("preset:") and state.state in ("running", "waiting")
        assert state.step == t.data["step"]
    for t in run + noop:  # only the first timer of its notification in the poll
        first = next(x for x in timers if x.data["notification_id"] == t.data["notification_id"])
        assert first is t


def test_unread_items_join_in_tenant_and_user_order_read_and_gone_ones_do_not() -> None:
    items = [("k1", "i1"), ("k2", "i2"), ("k3", "i3"), ("k4", "i4"), ("k5", "i5")]
    inbox = {
        "i1": ("", "u2", False),
        "i2": ("", "u1", False),
        "i3": ("", "u1", True),  # read
        "i5": ("acme", "u0", False),
    }  # i4: archived or erased
    assert join_order(items, inbox) == ["k2", "k1", "k5"]
