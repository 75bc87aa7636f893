"""May this message go to this person now? The one check every path that creates a message uses.

The classifier (first sends), the fallback's retries, push→email escalations and digests all
ask :func:`consent` with the recipient's stored preferences and quiet window, so no path can
forget an opt-out or wake someone up at night. Pure: ``at`` and everything looked up come in.

* **Preferences** (:func:`may_send`): a stored ``false`` for (category, channel) is an
  opt-out; critical is never opt-outable; an ``opt_in`` channel needs a stored ``true``; a
  digest (``digest=``: the recipient's digest switch) needs that switch on (the default).
* **Quiet hours** (:func:`held_until`): a non-critical, non-system message on a channel that
  interrupts (push, SMS, email by default) inside the window is held until it ends — the same
  :func:`~consumers.classifier.quiet_hours.quiet_until` the classifier uses, DST included.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from consumers.classifier.quiet_hours import QuietWindow, quiet_until
from schemas.models import Channel, Tier

__all__ = [
    "DEFAULT_QUIET_CHANNELS",
    "DIGEST_EVENT_TYPE",
    "Consent",
    "Verdict",
    "consent",
    "held_until",
    "may_send",
]

DEFAULT_QUIET_CHANNELS: frozenset[Channel] = frozenset({Channel.PUSH, Channel.SMS, Channel.EMAIL})
_NEVER_HELD = frozenset({Tier.CRITICAL, Tier.SYSTEM})
DIGEST_EVENT_TYPE = "digest"
"""The event type (and template) of every digest message, the fallback's and a workflow's."""


def may_send(
    tier: Tier,
    category: str,
    channel: Channel,
    preferences: Mapping[tuple[str, Channel], bool],
    *,
    opt_in: bool = False,
    digest: bool | None = None,
) -> bool:
    """Whether the recipient's preferences allow (category, channel) for this tier.

    ``digest``: None when the message is not a digest; for a digest, the recipient's digest
    switch (``herald_recipients.digest``, on unless the user turned it off), which wins over
    everything else: a user who said "no digests" gets none, whatever the categories say."""
    if digest is False:
        return False
    chosen = preferences.get((category, channel))
    if opt_in:
        return chosen is True
    return tier is Tier.CRITICAL or chosen is not False


def held_until(
    tier: Tier,
    channel: Channel,
    *,
    at: datetime,
    zone: ZoneInfo,
    window: QuietWindow | None,
    quiet_channels: Collection[Channel] = DEFAULT_QUIET_CHANNELS,
) -> datetime | None:
    """When a message that would go out at ``at`` may go instead (None: at once)."""
    if tier in _NEVER_HELD or channel not in quiet_channels:
        return None
    return quiet_until(at, zone, window)


class Verdict(StrEnum):
    SEND = "send"
    OPTED_OUT = "opted_out"
    HELD = "held"


@dataclass(frozen=True, slots=True)
class Consent:
    verdict: Verdict
    until: datetime | None = None  # HELD: the first instant outside the quiet window


def consent(
    *,
    tier: Tier,
    category: str,
    channel: Channel,
    at: datetime,
    preferences: Mapping[tuple[str, Channel], bool],
    zone: ZoneInfo,
    window: QuietWindow | None,
    quiet_channels: Collection[Channel] = DEFAULT_QUIET_CHANNELS,
    digest: bool | None = None,
    opt_in: bool = False,
) -> Consent:
    """Preferences first (an opt-out is final), then quiet hours. ``digest``, ``opt_in``: see :func:`may_send`."""
    if not may_send(tier, category, channel, preferences, opt_in=opt_in, digest=digest):
        return Consent(Verdict.OPTED_OUT)
    until = held_until(tier, channel, at=at, zone=zone, window=window, quiet_channels=quiet_channels)
    return Consent(Verdict.HELD, until) if until is not None else Consent(Verdict.SEND)
