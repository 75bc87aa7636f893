"""Quiet hours in the user's IANA zone: tables for the named cases, hypothesis for the rest."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.classifier.quiet_hours import (
    QuietAction,
    QuietWindow,
    in_window,
    quiet_decision,
    quiet_until,
)
from schemas.models import Tier

ZONES = [
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/London",
    "America/New_York",
    "UTC",
]
US = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)  # type: ignore[arg-type, misc]


W_22_07 = QuietWindow(time(22), time(7))


@pytest.mark.parametrize(
    ("zone", "now", "window", "expected"),
    [
        # not quiet
        ("UTC", utc(2025, 3, 1, 12), W_22_07, None),
        ("UTC", utc(2025, 3, 1, 7), W_22_07, None),  # end is exclusive
        ("UTC", utc(2025, 3, 1, 21, 59, 59), W_22_07, None),
        # crossing midnight, both sides
        ("UTC", utc(2025, 3, 1, 22), W_22_07, utc(2025, 3, 2, 7)),
        ("UTC", utc(2025, 3, 2, 3), W_22_07, utc(2025, 3, 2, 7)),
        # a window inside one day
        ("UTC", utc(2025, 3, 1, 13), QuietWindow(time(12), time(14)), utc(2025, 3, 1, 14)),
        # start == end: no window at all
        ("UTC", utc(2025, 3, 1, 13), QuietWindow(time(13), time(13)), None),
        # fractional offsets
        (
            "Asia/Kathmandu",
            local("Asia/Kathmandu", 2025, 3, 1, 23, 10),
            W_22_07,
            local("Asia/Kathmandu", 2025, 3, 2, 7),
        ),
        ("Asia/Kathmandu", utc(2025, 3, 1, 1, 14), W_22_07, utc(2025, 3, 1, 1, 15)),  # 06:59 local +05:45
        (
            "America/St_Johns",
            local("America/St_Johns", 2025, 1, 10, 23),
            W_22_07,
            local("America/St_Johns", 2025, 1, 11, 7),
        ),
        # New York spring forward 2025-03-09 02:00 → 03:00: a window ending in the gap ends at the jump
        (
            "America/New_York",
            local("America/New_York", 2025, 3, 9, 1, 30),
            QuietWindow(time(22), time(2, 30)),
            local("America/New_York", 2025, 3, 9, 3),
        ),
        # ... and a window starting in the gap is already quiet right after the jump
        (
            "America/New_York",
            local("America/New_York", 2025, 3, 9, 3, 5),
            QuietWindow(time(2, 30), time(6)),
            local("America/New_York", 2025, 3, 9, 6),
        ),
        # New York fall back 2025-11-02 02:00 → 01:00: the repeated hour is quiet both times
        (
            "America/New_York",
            local("America/New_York", 2025, 11, 2, 1, 10, fold=0),
            QuietWindow(time(0), time(1, 30)),
            local("America/New_York", 2025, 11, 2, 1, 30, fold=0),
        ),
        (
            "America/New_York",
            local("America/New_York", 2025, 11, 2, 1, 10, fold=1),
            QuietWindow(time(0), time(1, 30)),
            local("America/New_York", 2025, 11, 2, 1, 30, fold=1),
        ),
        # Lord Howe: 30-minute DST, 2025-10-05 02:00 → 02:30
        (
            "Australia/Lord_Howe",
            local("Australia/Lord_Howe", 2025, 10, 5, 1, 50),
            QuietWindow(time(1), time(2, 15)),
            local("Australia/Lord_Howe", 2025, 10, 5, 2, 30),
        ),
        # Chatham (+13:45 in summer) 2025-09-28 02:45 → 03:45
        (
            "Pacific/Chatham",
            local("Pacific/Chatham", 2025, 9, 28, 2),
            QuietWindow(time(23), time(3)),
            local("Pacific/Chatham", 2025, 9, 28, 3, 45),
        ),
    ],
)
def test_quiet_until_table(zone: str, now: datetime, window: QuietWindow, expected: datetime | None) -> None:
    assert quiet_until(now, ZoneInfo(zone), window) == expected


@pytest.mark.parametrize("tier", list(Tier))
def test_tiers_inside_the_window(tier: Tier) -> None:
    tz = ZoneInfo("Europe/London")
    now = local("Europe/London", 2025, 6, 1, 23)
    release = local("Europe/London", 2025, 6, 2, 7)
    d = quiet_decision(
        now, tz, W_22_07, tier, occurred_at=now - timedelta(minutes=1), stale_after=timedelta(hours=12)
    )
    expected = {
        Tier.CRITICAL: QuietAction.SEND,
        Tier.SYSTEM: QuietAction.SEND,
        Tier.HIGH: QuietAction.DEFER,
        Tier.MEDIUM: QuietAction.DEFER,
        Tier.LOW: QuietAction.DEFER,  # 8h away < 12h staleness
    }[tier]
    assert d.action is expected
    if expected is QuietAction.DEFER:
        assert d.until == release and d.reason == "quiet_hours"


@pytest.mark.parametrize(
    ("age", "stale_after", "inside", "expected"),
    [
        (timedelta(hours=1), timedelta(hours=24), False, QuietAction.SEND),
        (timedelta(hours=25), timedelta(hours=24), False, QuietAction.DROP),  # already stale
        (timedelta(hours=1), timedelta(hours=4), True, QuietAction.DROP),  # would be stale at release (8h)
        (timedelta(hours=1), timedelta(hours=9, minutes=1), True, QuietAction.DEFER),
    ],
)
def test_low_tier_staleness(
    age: timedelta, stale_after: timedelta, inside: bool, expected: QuietAction
) -> None:
    now = utc(2025, 6, 1, 23 if inside else 12)
    d = quiet_decision(
        now, ZoneInfo("UTC"), W_22_07, Tier.LOW, occurred_at=now - age, stale_after=stale_after
    )
    assert d.action is expected
    if expected is QuietAction.DROP:
        assert d.reason == "stale"


def test_high_is_never_dropped_for_age() -> None:
    now = utc(2025, 6, 1, 12)
    d = quiet_decision(
        now,
        ZoneInfo("UTC"),
        None,
        Tier.HIGH,
        occurred_at=now - timedelta(days=30),
        stale_after=timedelta(hours=1),
    )
    assert d.action is QuietAction.SEND


# -- properties over arbitrary instants, zones and windows ---------------------------------------

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
windows = st.builds(QuietWindow, clock_times, clock_times)


def _dst_instants() -> st.SearchStrategy[tuple[str, datetime]]:
    """Instants within a few hours of a DST transition of one of the zones (where bugs live)."""
    transitions = []
    for zone in ZONES:
        tz = ZoneInfo(zone)
        t = utc(2024, 1, 1)
        prev = t.astimezone(tz).utcoffset()
        while t < utc(2026, 1, 1):
            t += timedelta(minutes=15)
            off = t.astimezone(tz).utcoffset()
            if off != prev:
                transitions.append((zone, t))
                prev = off
    return st.sampled_from(transitions).flatmap(
        lambda zt: st.tuples(st.just(zt[0]), st.integers(-6 * 3600 * 10**6, 6 * 3600 * 10**6)).map(
            lambda z_us: (z_us[0], zt[1] + timedelta(microseconds=z_us[1]))
        )
    )


def _check_release(now: datetime, zone: str, window: QuietWindow) -> None:
    tz = ZoneInfo(zone)
    until = quiet_until(now, tz, window)
    if not in_window(now, tz, window):
        assert until is None
        return
    assert until is not None
    assert until > now
    assert not in_window(until, tz, window)  # released outside the window...
    assert in_window(until - US, tz, window)  # ... at the first such instant
    assert until - now <= timedelta(hours=25)
    # and the whole stretch in between is quiet
    step = (until - now) // 17  # floor: now + 17 steps never reaches until (/ rounds to nearest)
    for k in range(17):
        assert in_window(now + step * k, tz, window)


@settings(max_examples=400, deadline=None)
@given(now=instants, zone=st.sampled_from(ZONES), window=windows)
def test_release_is_the_first_instant_outside_the_window(
    now: datetime, zone: str, window: QuietWindow
) -> None:
    _check_release(now, zone, window)


@settings(max_examples=400, deadline=None)
@given(zone_now=_dst_instants(), window=windows)
def test_release_near_dst_transitions(zone_now: tuple[str, datetime], window: QuietWindow) -> None:
    zone, now = zone_now
    _check_release(now, zone, window)


@settings(max_examples=200, deadline=None)
@given(now=instants, zone=st.sampled_from(ZONES), window=windows, tier=st.sampled_from(list(Tier)))
def test_critical_and_system_are_never_held(
    now: datetime, zone: str, window: QuietWindow, tier: Tier
) -> None:
    d = quiet_decision(now, ZoneInfo(zone), window, tier, occurred_at=now, stale_after=timedelta(hours=1))
    if tier in (Tier.CRITICAL, Tier.SYSTEM) or not in_window(now, ZoneInfo(zone), window):
        assert d.action is QuietAction.SEND
    else:
        assert d.action in (QuietAction.DEFER, QuietAction.DROP)
        if d.action is QuietAction.DEFER:
            assert d.until == quiet_until(now, ZoneInfo(zone), window)
