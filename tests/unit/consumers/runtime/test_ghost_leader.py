"""The takeover's decision: when a follower joins as the leader its group keeps naming."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.ghost_leader import LeaderWatch, takeover

ME, GONE = "herald-b", "herald-a"


def test_a_leader_named_past_the_bound_while_every_sync_is_refused_is_taken_over() -> None:
    w = LeaderWatch()
    w.joined(0.0, GONE, ME)
    w.joined(8.0, GONE, ME)
    assert takeover(w, now=11.9, refused=True, after_s=12.0) is None
    assert takeover(w, now=12.0, refused=True, after_s=12.0) == GONE


def test_a_sync_that_goes_through_starts_the_count_over() -> None:
    w = LeaderWatch()
    w.joined(0.0, GONE, ME)
    w.synced()  # the leader assigned: it is alive
    w.joined(20.0, GONE, ME)
    assert takeover(w, now=31.0, refused=True, after_s=12.0) is None
    assert takeover(w, now=32.0, refused=True, after_s=12.0) == GONE


def test_a_new_leader_starts_the_count_over_and_leading_ourselves_never_counts() -> None:
    w = LeaderWatch()
    w.joined(0.0, GONE, ME)
    w.joined(10.0, "herald-c", ME)
    assert takeover(w, now=21.0, refused=True, after_s=12.0) is None
    w.joined(30.0, ME, ME)
    assert takeover(w, now=1e6, refused=True, after_s=12.0) is None


@given(
    gaps=st.lists(st.tuples(st.floats(0.001, 1e3), st.sampled_from([ME, GONE, "herald-c"])), max_size=20),
    synced_at=st.one_of(st.none(), st.integers(0, 20)),
    now=st.floats(0, 2e4),
    refused=st.booleans(),
    after=st.floats(0, 100),
)
def test_only_ever_another_member_continuously_named_for_the_bound_with_the_sync_refused(
    gaps: list[tuple[float, str]], synced_at: int | None, now: float, refused: bool, after: float
) -> None:
    joins, t = [], 0.0
    for gap, leader in gaps:
        t += gap
        joins.append((t, leader))
    w = LeaderWatch()
    for i, (t, leader) in enumerate(joins):
        if i == synced_at:
            w.synced()
        w.joined(t, leader, ME)
    if synced_at is not None and synced_at >= len(joins):
        w.synced()
    got = takeover(w, now=now, refused=refused, after_s=after)
    if got is None:
        return
    assert refused and after > 0 and got != ME
    # Named in every join since the streak began, and the streak is at least the bound long.
    streak = [leader for t, leader in joins if t >= w.since]
    assert streak and set(streak) == {got}
    assert now - w.since >= after
