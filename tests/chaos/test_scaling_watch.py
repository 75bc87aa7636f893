"""The scaling storm's rebalance clock (tests/chaos/scaling.py): pure, no pipeline."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.chaos.scaling import balanced, longest_uncovered


def test_settled_means_joined_covered_and_even() -> None:
    assert balanced([4], 4)
    assert balanced([1, 1, 1, 1, 0, 0], 4)
    assert balanced([2, 2, 1, 1, 1, 1], 8)
    assert not balanced([4, 0, 0, 0, 0, 0], 4)  # the old owner still holds everything
    assert not balanced([1, 1, 1, 1, None], 4)  # a live member that has not joined yet
    assert not balanced([1, 1, 1, 0], 4)  # a partition with no member
    assert not balanced([], 4)


def test_the_longest_uncovered_stretch() -> None:
    samples: list[tuple[float, list[int | None]]] = [
        (0.0, [4]),
        (1.0, [0, None]),
        (2.0, [0, 0]),
        (3.5, [2, 2]),
        (4.0, [1, 1, None]),
        (4.5, [1, 1, 2]),
    ]
    assert longest_uncovered(samples, 4) == 2.5
    assert longest_uncovered([(0.0, [4]), (1.0, [0]), (3.0, [0])], 4) == 2.0  # uncovered to the end
    assert longest_uncovered([], 4) == 0.0


@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 4)), max_size=30))
def test_never_longer_than_the_samples_span(steps: list[tuple[float, int]]) -> None:
    at, samples = 0.0, list[tuple[float, list[int | None]]]()
    for gap, held in steps:
        at += gap
        samples.append((at, [held]))
    got = longest_uncovered(samples, 4)
    assert 0.0 <= got <= at
    if all(held == 4 for _, held in steps):
        assert got == 0.0
