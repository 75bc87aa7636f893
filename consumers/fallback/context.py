"""What every part of the fallback consumer shares: clock, scheduler, topics, codec, settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from consumers.classifier.quiet_hours import QuietWindow
from consumers.infra.clock import Clock
from consumers.infra.settings import FallbackSettings
from consumers.runtime.handling import Output
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler
from schemas.codec import Codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane

__all__ = ["Contact", "FallbackContext", "load_contact"]


@dataclass(frozen=True, slots=True)
class FallbackContext:
    scheduler: Scheduler
    topics: Topics
    codec: Codec
    settings: FallbackSettings
    clock: Clock
    default_locale: str = "en"

    def email_output(self, message: ChannelMessage) -> Output:
        return Output(
            self.topics.channel(Channel.EMAIL, Lane.PRIORITY),
            self.codec.encode(message),
            message.user_id.encode(),
        )

    def outcome_output(self, outcome: DeliveryOutcome) -> Output:
        return Output(self.topics.outcomes, self.codec.encode(outcome), outcome.notification_id.encode())


@dataclass(frozen=True, slots=True)
class Contact:
    """What the fallback needs of a recipient: where to email and when not to."""

    email: str | None
    locale: str
    timezone: str
    zone: ZoneInfo
    quiet: QuietWindow | None


async def load_contact(conn: asyncpg.Connection, user_id: str, default_locale: str) -> Contact:
    row = await conn.fetchrow(
        "SELECT email, locale, timezone, quiet_start, quiet_end FROM herald_recipients WHERE user_id = $1",
        user_id,
    )
    if row is None:
        return Contact(None, default_locale, "UTC", ZoneInfo("UTC"), None)
    try:
        zone = ZoneInfo(row["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")  # a bad zone in the table must not stop digests; UTC is the safe reading
    start: time | None = row["quiet_start"]
    end: time | None = row["quiet_end"]
    quiet = QuietWindow(start, end) if start is not None and end is not None else None
    return Contact(row["email"] or None, row["locale"] or default_locale, zone.key, zone, quiet)
