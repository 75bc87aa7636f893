"""The one Retry-After parser: delta-seconds, HTTP-dates, the cap, and garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.retry_after import MAX_RETRY_AFTER_S, parse_retry_after

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("45", 45.0),
        (" 120 ", 120.0),
        ("86400", 86_400.0),
        ("999999999", 86_400.0),  # capped at a day
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # delta-seconds are whole numbers
        ("٣", None),  # a digit, but not an ASCII one
        ("Wed, 25 Nov 2026 12:01:30 GMT", 90.0),
        ("Wed, 25 Nov 2026 12:00:30 GMT", 30.0),
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("Wed, 25 Nov 2026 13:00:00 +0100", 0.0),  # same instant, another zone
        ("Wed, 25 Nov 2026 12:01:30", 90.0),  # no zone: UTC
        ("Fri, 31 Dec 9999 23:59:59 GMT", 86_400.0),  # capped
        ("Wed, 99 Nov 2026 12:00:00 GMT", None),
    ],
)
def test_table(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_the_cap_is_an_argument() -> None:
    assert parse_retry_after("600", NOW, cap_s=60.0) == 60.0
    assert parse_retry_after("Wed, 25 Nov 2026 12:10:00 GMT", NOW, cap_s=60.0) == 60.0


@given(st.text())
def test_any_text_parses_to_none_or_a_capped_delay(value: str) -> None:
    got = parse_retry_after(value, NOW)
    assert got is None or 0.0 <= got <= MAX_RETRY_AFTER_S


@given(st.integers(0, 10**12))
def test_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == min(float(seconds), MAX_RETRY_AFTER_S)


@given(st.integers(-(10**7), 10**7))
def test_http_dates(offset_s: int) -> None:
    header = format_datetime(NOW + timedelta(seconds=offset_s), usegmt=True)
    assert parse_retry_after(header, NOW) == min(max(0.0, float(offset_s)), MAX_RETRY_AFTER_S)
