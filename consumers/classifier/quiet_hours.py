"""Quiet hours in the recipient's own IANA time zone: pure, ``now`` passed in.

A window is a local wall-clock interval ``[start, end)``; ``start > end`` crosses midnight,
``start == end`` means no window. Membership depends only on the local wall-clock time, so
DST needs no special case for membership: a window start that does not exist that day (a
spring-forward gap) begins at the first instant the clock shows a later time, and a repeated
hour (fall-back) is quiet each time the clock shows a quiet time. The release time of a
deferred message is the **first instant at or after now whose wall-clock time is outside
the window**: either the instant the clock reaches ``end``, or a DST transition that jumps
the clock out of the window, whichever comes first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from schemas.models import Tier

__all__ = [
    "SEND",
    "QuietAction",
    "QuietDecision",
    "QuietWindow",
    "in_window",
    "quiet_decision",
    "quiet_until",
]

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class QuietWindow:
    start: time
    end: time

    def contains(self, wall: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end


class QuietAction(StrEnum):
    SEND = "send"
    DEFER = "defer"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class QuietDecision:
    action: QuietAction
    until: datetime | None = None  # DEFER: the release instant (UTC)
    reason: str | None = None  # DEFER: quiet_hours; DROP: stale


SEND = QuietDecision(QuietAction.SEND)


def _wall(instant: datetime, tz: ZoneInfo) -> time:
    return instant.astimezone(tz).time().replace(tzinfo=None)


def in_window(now: datetime, tz: ZoneInfo, window: QuietWindow) -> bool:
    """Whether the local wall-clock time at ``now`` (aware) is quiet."""
    return window.contains(_wall(now, tz))


def _transition_between(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first whole second in (lo, hi] whose UTC offset differs from lo's (tzdata transitions
    fall on whole seconds). Requires utcoffset(lo) != utcoffset(hi)."""
    offset = lo.astimezone(tz).utcoffset()
    lo_s = math.floor(lo.timestamp())  # transitions are whole seconds: offset(lo_s) == offset(lo)
    hi_s = math.floor(hi.timestamp()) + 1
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
            lo_s = mid
        else:
            hi_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def quiet_until(now: datetime, tz: ZoneInfo, window: QuietWindow | None) -> datetime | None:
    """None when ``now`` is not quiet; else the first instant at/after now outside the window (UTC)."""
    if window is None or not in_window(now, tz, window):
        return None
    t = now.astimezone(UTC)
    for _ in range(8):  # each pass crosses a DST transition; real zones need at most two in a day
        local = t.astimezone(tz)
        offset = local.utcoffset()
        assert offset is not None
        wall = local.replace(tzinfo=None)
        end = datetime.combine(wall.date(), window.end)
        if end <= wall:
            end += _DAY
        # The instant the clock would reach `end` if the offset held until then.
        candidate = (end - offset).replace(tzinfo=UTC)
        if candidate.astimezone(tz).utcoffset() == offset:
            return candidate
        transition = _transition_between(t, candidate, tz)
        if transition <= candidate and not in_window(transition, tz, window):
            return transition  # the clock jumped out of the window before reaching `end`
        t = transition
    raise RuntimeError(f"quiet_until: no release found for {now.isoformat()} in {tz.key}")


def quiet_decision(
    now: datetime,
    tz: ZoneInfo,
    window: QuietWindow | None,
    tier: Tier,
    *,
    occurred_at: datetime | None = None,
    stale_after: timedelta | None = None,
    until: Callable[[datetime, ZoneInfo, QuietWindow | None], datetime | None] | None = None,
) -> QuietDecision:
    """``(now_utc, zone, window, tier)`` → send now | defer until T | drop.

    Critical and system are never held. High and medium are deferred to the window's end.
    Low is deferred too, unless it would be older than ``stale_after`` (counted from
    ``occurred_at``) when released, or already is: then it is dropped as ``stale``.
    ``until`` replaces :func:`quiet_until` (the classifier's remembers its answers per batch).
    """
    if tier in (Tier.CRITICAL, Tier.SYSTEM):
        return SEND
    stale_at = None
    if tier is Tier.LOW and occurred_at is not None and stale_after is not None:
        stale_at = occurred_at + stale_after
    if stale_at is not None and now >= stale_at:
        return QuietDecision(QuietAction.DROP, reason="stale")
    release = (until or quiet_until)(now, tz, window)
    if release is None:
        return SEND
    if stale_at is not None and release >= stale_at:
        return QuietDecision(QuietAction.DROP, reason="stale")
    return QuietDecision(QuietAction.DEFER, until=release, reason="quiet_hours")
