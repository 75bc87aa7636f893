"""Monthly archive partitions: the one a moment belongs to, and which have outlived their retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from consumers.inbox.archive import expired_partitions, partition_for


def test_partition_for_a_month_and_its_bounds() -> None:
    p = partition_for(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert p.name == "herald_inbox_archive_y2026m12"
    assert (p.start, p.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    # the month is the UTC month, whatever zone the moment is given in
    lisbon_new_year = datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert partition_for(lisbon_new_year).name == "herald_inbox_archive_y2026m12"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_every_moment_falls_inside_its_partition(at: datetime) -> None:
    p = partition_for(at)
    assert p.start <= at < p.end


def test_expired_partitions_are_those_entirely_older_than_the_retention() -> None:
    names = [
        "herald_inbox_archive_y2025m01",
        "herald_inbox_archive_y2025m02",
        "herald_inbox_archive_y2025m03",
        "something_else",
    ]
    now = datetime(2025, 4, 2, tzinfo=UTC)
    assert expired_partitions(names, now, 60) == ["herald_inbox_archive_y2025m01"]  # ended 2025-02-01
    assert expired_partitions(names, now, 0) == []  # 0 keeps everything
    assert expired_partitions(names, now, 1) == names[:3]  # March ended 2025-04-01, a day ago
    assert expired_partitions(names, now, 2) == names[:2]  # ... not two days ago
