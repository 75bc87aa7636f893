"""The fallback's pure decisions on critical notifications: what counts as reaching the user,
whether that was in time, and which send of a run of outcomes reached them first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.fallback.decisions import counts_as_sent, critical_verdict, earliest_reach
from schemas.models import OutcomeStatus

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (OutcomeStatus.SENT, True),
        (OutcomeStatus.DELIVERED, True),
        (OutcomeStatus.READ, True),
        (OutcomeStatus.FAILED_RETRYABLE, False),
        (OutcomeStatus.FAILED_PERMANENT, False),
        (OutcomeStatus.EXHAUSTED, False),
    ],
)
def test_counts_as_sent(status: OutcomeStatus, expected: bool) -> None:
    assert counts_as_sent(status) is expected


@pytest.mark.parametrize(
    ("first_sent", "expected"),
    [(None, False), (T0, True), (T0 + timedelta(seconds=120), True), (T0 + timedelta(seconds=121), False)],
)
def test_critical_verdict(first_sent: datetime | None, expected: bool) -> None:
    assert critical_verdict(T0 + timedelta(seconds=120), first_sent) is expected


SENDS = st.lists(
    st.tuples(
        st.sampled_from(["n1", "n2", "n3"]),
        st.integers(0, 5).map(lambda s: T0 + timedelta(seconds=s)),
        st.sampled_from([None, "push", "sms", "email"]),
    ),
    max_size=12,
)


@given(SENDS)
def test_earliest_reach_is_each_notifications_earliest_send_the_first_of_ties(
    sends: list[tuple[str, datetime, str | None]],
) -> None:
    expected = {}
    for nid in {n for n, _, _ in sends}:
        mine = [(at, i, channel) for i, (n, at, channel) in enumerate(sends) if n == nid]
        at, _, channel = min(mine, key=lambda m: (m[0], m[1]))
        expected[nid] = (at, channel)
    assert earliest_reach(sends) == expected


def test_earliest_reach_keeps_the_first_of_equal_times() -> None:
    later = T0 + timedelta(seconds=1)
    sends = [("n", later, "sms"), ("n", T0, "push"), ("n", T0, "email")]
    assert earliest_reach(sends) == {"n": (T0, "push")}
