"""The fan-out's pure half: copy ids, and which cursor-less topic events are too old to broadcast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumers.fanout.copies import (
    FINISHED_FANOUT_KEEP,
    STALE_BROADCAST_AFTER,
    copy_id,
    stale_without_cursor,
)

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def test_an_event_whose_cursor_could_have_been_pruned_is_stale() -> None:
    # A pruned cursor finished at least FINISHED_FANOUT_KEEP ago, so its event occurred earlier
    # still; the day of margin covers a producer's clock that runs ahead.
    assert STALE_BROADCAST_AFTER < FINISHED_FANOUT_KEEP
    assert stale_without_cursor(NOW - FINISHED_FANOUT_KEEP, NOW)
    assert not stale_without_cursor(NOW - STALE_BROADCAST_AFTER, NOW)
    assert not stale_without_cursor(NOW + timedelta(minutes=5), NOW)  # a clock ahead of ours


@given(age=st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=400)))
def test_stale_exactly_past_the_threshold(age: timedelta) -> None:
    assert stale_without_cursor(NOW - age, NOW) == (age > STALE_BROADCAST_AFTER)


@given(event_id=st.text(min_size=1), a=st.text(min_size=1), b=st.text(min_size=1))
def test_copy_ids_are_stable_and_differ_per_subscriber(event_id: str, a: str, b: str) -> None:
    assert copy_id(event_id, a) == copy_id(event_id, a)
    assert (copy_id(event_id, a) == copy_id(event_id, b)) == (a == b)
