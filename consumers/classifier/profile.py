"""What the classifier knows about a user: addresses, zone, quiet window, preferences, endpoints."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from consumers.classifier.consent import DIGEST_EVENT_TYPE, may_send
from consumers.classifier.quiet_hours import QuietWindow
from schemas.models import Channel, Tier

__all__ = ["Endpoint", "Profile", "zone"]


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone by name; an unknown name falls back to UTC (bad data must not stop delivery)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    event_types: tuple[str, ...] = ("*",)

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.event_types)


@dataclass(frozen=True, slots=True)
class Profile:
    """One user of one tenant (``''``: the default tenant). ``known`` is False when
    herald_recipients has no row (defaults apply)."""

    user_id: str
    known: bool = False
    email: str | None = None
    phone: str | None = None
    timezone: str = "UTC"
    locale: str | None = None
    quiet: QuietWindow | None = None
    preferences: Mapping[tuple[str, Channel], bool] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()
    tenant: str = ""
    digest: bool = True  # the email digest switch (herald_recipients.digest)

    def allows(
        self, tier: Tier, category: str, channel: Channel, *, opt_in: bool = False, event_type: str = ""
    ) -> bool:
        """The consent check's preference half (:func:`consumers.classifier.consent.may_send`);
        a digest (``event_type`` ``digest``) needs the user's digest switch on too."""
        if not self.preferences and event_type != DIGEST_EVENT_TYPE:
            return not opt_in  # may_send without a preference: opt-ins need one, the rest go
        digest = self.digest if event_type == DIGEST_EVENT_TYPE else None
        return may_send(tier, category, channel, self.preferences, opt_in=opt_in, digest=digest)

    def preference(self, category: str, channel: Channel) -> bool | None:
        """True/False when the user chose; None when there is no row (the channel's default)."""
        return self.preferences.get((category, channel))
