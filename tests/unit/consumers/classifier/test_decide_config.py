"""DecideConfig's per-batch memory answers what the pure functions answer."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.decide_config import DecideConfig
from consumers.classifier.profile import zone
from consumers.classifier.quiet_hours import QuietWindow, quiet_until
from consumers.classifier.ratelimit import bucket_hour
from consumers.runtime.topics import Topics
from schemas.codec import default_codec

_ZONES = ["UTC", "Europe/Lisbon", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"]
_WINDOWS = [
    None,
    QuietWindow(time(22), time(7)),
    QuietWindow(time(9), time(17)),
    QuietWindow(time(1), time(1)),
]
_START = datetime(2026, 1, 1, tzinfo=UTC)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 366 * 24 * 4),  # quarter hours into the year: DST changes included
            st.sampled_from(_ZONES),
            st.sampled_from(_WINDOWS),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_remembered_answers_are_the_functions(asks: list[tuple[int, str, QuietWindow | None]]) -> None:
    cfg = DecideConfig(Topics("t"), default_codec())
    for quarters, name, window in asks:  # repeated and alternating instants, zones and windows
        now = _START + timedelta(minutes=15 * quarters)
        assert cfg.quiet_until(now, zone(name), window) == quiet_until(now, zone(name), window)
        assert cfg.hour(now) == bucket_hour(now)


def test_an_equal_instant_keeps_the_answers_a_new_one_forgets_them() -> None:
    cfg = DecideConfig(Topics("t"), default_codec())
    night = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    window = QuietWindow(time(22), time(7))
    assert cfg.quiet_until(night, zone("UTC"), window) == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert cfg.quiet_until(night.replace(), zone("UTC"), window) == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert cfg.quiet_until(noon, zone("UTC"), window) is None
    assert cfg.hour(noon) == bucket_hour(noon) != bucket_hour(night)
