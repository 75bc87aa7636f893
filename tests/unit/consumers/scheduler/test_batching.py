"""Which rows of a poll fire together, and the order their outputs go out in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.handling import Output
from consumers.scheduler.batching import batches, in_row_order

KINDS = st.lists(
    st.one_of(st.none(), st.sampled_from(["publish", "workflow_step", "digest_send"])), max_size=30
)


def test_the_rows_of_a_batchable_kind_fire_together_in_their_order() -> None:
    kinds = ["workflow_step", "publish", "workflow_step", None, "digest_send", "workflow_step"]
    assert batches(kinds, {"workflow_step"}) == {"workflow_step": [0, 2, 5]}


def test_an_unreadable_row_is_never_in_a_batch() -> None:
    assert batches([None, None], {"workflow_step"}) == {}


@given(KINDS, st.sets(st.sampled_from(["publish", "workflow_step", "digest_send"])))
def test_every_row_of_a_batchable_kind_is_in_its_batch_once_and_no_other_row_is(
    kinds: list[str | None], batchable: set[str]
) -> None:
    got = batches(kinds, batchable)
    assert set(got) <= batchable
    indices = [i for rows in got.values() for i in rows]
    assert sorted(indices) == [i for i, k in enumerate(kinds) if k is not None and k in batchable]
    for kind, rows in got.items():
        assert rows == sorted(rows) and all(kinds[i] == kind for i in rows)


def _out(i: int, n: int) -> list[Output]:
    return [Output("t", b"%d.%d" % (i, j), None) for j in range(n)]


def test_outputs_go_out_in_the_rows_order_whatever_order_they_fired_in() -> None:
    fired = {5: _out(5, 1), 0: _out(0, 2), 3: []}  # a batch (5, 0) fired before row 3
    assert [o.value for o in in_row_order(fired)] == [b"0.0", b"0.1", b"5.0"]


@given(st.dictionaries(st.integers(0, 50), st.integers(0, 3)))
def test_every_output_goes_out_once_grouped_by_row(sizes: dict[int, int]) -> None:
    fired = {i: _out(i, n) for i, n in sizes.items()}
    got = [o.value for o in in_row_order(fired)]
    assert got == [o.value for i in sorted(fired) for o in fired[i]]
    assert len(got) == sum(sizes.values())


def test_kinds_fire_in_the_order_the_poller_was_given_not_the_rows_order() -> None:
    # a kind whose batch locks rows another kind's batch must lock first is given first
    kinds = ["critical_check", "retry", "workflow_step", "critical_check"]
    got = batches(kinds, {"workflow_step": 0, "retry": 1, "critical_check": 2})
    assert list(got) == ["workflow_step", "retry", "critical_check"]
    assert got["critical_check"] == [0, 3]
