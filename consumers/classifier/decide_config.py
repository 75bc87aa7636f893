"""What :mod:`consumers.classifier.decide` needs besides the event: settings, codec, and the
caches that make it cheap per event.

The caches only remember answers of pure functions: topics by (channel, lane), the ChannelMessage
encoder, and, for the current batch's ``now`` (one per batch), the rate-limit hour and the end of
quiet hours per (zone, window). Users share a handful of zones and windows, so the DST-aware
release time is worked out a few times per batch instead of once per quiet event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from consumers.classifier.family import Family, MessageEncoder
from consumers.classifier.quiet_hours import QuietWindow, quiet_until
from consumers.classifier.ratelimit import bucket_hour
from consumers.runtime.topics import Topics
from schemas.codec import Codec
from schemas.models import Channel, ChannelMessage, Lane

__all__ = ["DecideConfig"]


@dataclass(frozen=True, slots=True)
class DecideConfig:
    topics: Topics
    codec: Codec
    default_locale: str = "en"
    limits: Mapping[str, int] = field(default_factory=dict)
    stale_after: timedelta = timedelta(days=1)
    quiet_channels: frozenset[Channel] = frozenset({Channel.PUSH, Channel.SMS, Channel.EMAIL})
    rate_prefix: str = "herald:rl"
    defer_on_limiter_down: tuple[str, ...] = ("low",)
    limiter_retry: timedelta = timedelta(minutes=5)
    _channel_topics: dict[tuple[Channel, Lane], str] = field(default_factory=dict, repr=False, compare=False)
    _messages: list[MessageEncoder] = field(default_factory=list, repr=False, compare=False)
    # [now, bucket_hour(now), {(zone, window): quiet_until(now, zone, window)}] of the last `now` asked
    _at: list[Any] = field(default_factory=lambda: [None, 0, {}], repr=False, compare=False)

    def encode_message(self, message: ChannelMessage, family: Family | None = None) -> bytes:
        """``codec.encode(message)``, byte for byte; with the event's ``family``, the fields all its
        messages share are encoded once (:mod:`consumers.classifier.family`)."""
        if not self._messages:
            self._messages.append(MessageEncoder(self.codec))
        return self._messages[0].encode(message, family)

    def channel_topic(self, channel: Channel, lane: Lane) -> str:
        topic = self._channel_topics.get((channel, lane))
        if topic is None:
            topic = self._channel_topics[(channel, lane)] = self.topics.channel(channel, lane)
        return topic

    def _now(self, now: datetime) -> list[Any]:
        at = self._at
        if at[0] is not now and at[0] != now:  # a new batch: forget the last one's answers
            at[0], at[1], at[2] = now, bucket_hour(now), {}
        return at

    def hour(self, now: datetime) -> int:
        """:func:`~consumers.classifier.ratelimit.bucket_hour` of ``now``."""
        hour: int = self._now(now)[1]
        return hour

    def quiet_until(self, now: datetime, tz: ZoneInfo, window: QuietWindow | None) -> datetime | None:
        """:func:`~consumers.classifier.quiet_hours.quiet_until`, remembered for ``now``."""
        if window is None:
            return None
        known: dict[tuple[ZoneInfo, QuietWindow], datetime | None] = self._now(now)[2]
        try:
            return known[(tz, window)]
        except KeyError:
            until = known[(tz, window)] = quiet_until(now, tz, window)
            return until
