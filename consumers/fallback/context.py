"""What every part of the fallback consumer shares: clock, scheduler, topics, codec, settings."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from consumers.classifier.consent import DEFAULT_QUIET_CHANNELS, DIGEST_EVENT_TYPE, Consent, consent
from consumers.classifier.quiet_hours import QuietWindow
from consumers.infra.clock import Clock
from consumers.infra.settings import FallbackSettings
from consumers.runtime.handling import Output
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler
from schemas.codec import Codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, Tier

__all__ = ["Contact", "FallbackContext", "load_contact", "load_contacts"]


@dataclass(frozen=True, slots=True)
class FallbackContext:
    scheduler: Scheduler
    topics: Topics
    codec: Codec
    settings: FallbackSettings
    clock: Clock
    default_locale: str = "en"
    quiet_channels: frozenset[Channel] = DEFAULT_QUIET_CHANNELS

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
    preferences: Mapping[tuple[str, Channel], bool] = field(default_factory=dict)
    digest: bool = True  # the email digest switch (herald_recipients.digest)

    def consent(
        self,
        *,
        tier: Tier,
        category: str,
        channel: Channel,
        at: datetime,
        quiet_channels: frozenset[Channel] = DEFAULT_QUIET_CHANNELS,
        opt_in: bool = False,
        event_type: str = "",
    ) -> Consent:
        """The same check the classifier makes (:func:`consumers.classifier.consent.consent`); a
        digest (``event_type`` ``digest``) needs the user's digest switch on, as the classifier's."""
        return consent(
            tier=tier,
            category=category,
            channel=channel,
            at=at,
            preferences=self.preferences,
            zone=self.zone,
            window=self.quiet,
            quiet_channels=quiet_channels,
            opt_in=opt_in,
            digest=self.digest if event_type == DIGEST_EVENT_TYPE else None,
        )


_CONTACT = """
SELECT r.email, r.locale, r.timezone, r.quiet_start, r.quiet_end, r.digest,
       (SELECT json_agg(json_build_array(p.category, p.channel, p.enabled))
          FROM herald_preferences p WHERE p.tenant = u.tenant AND p.user_id = u.id) AS prefs
FROM (SELECT $1::text AS id, $2::text AS tenant) u
LEFT JOIN herald_recipients r ON r.tenant = u.tenant AND r.user_id = u.id
"""


async def load_contact(
    conn: asyncpg.Connection, user_id: str, default_locale: str, tenant: str = ""
) -> Contact:
    """The recipient's address, locale, zone, quiet window and preferences (one query): ``user_id``
    in ``tenant`` ('' = the default tenant), never another tenant's."""
    row = await conn.fetchrow(_CONTACT, user_id, tenant)
    assert row is not None
    return _contact_of(row, default_locale)


_CONTACTS = """
SELECT u.id, u.tenant, r.email, r.locale, r.timezone, r.quiet_start, r.quiet_end, r.digest,
       (SELECT json_agg(json_build_array(p.category, p.channel, p.enabled))
          FROM herald_preferences p WHERE p.tenant = u.tenant AND p.user_id = u.id) AS prefs
FROM unnest($1::text[], $2::text[]) AS u(tenant, id)
LEFT JOIN herald_recipients r ON r.tenant = u.tenant AND r.user_id = u.id
"""


async def load_contacts(
    conn: asyncpg.Connection, who: Collection[tuple[str, str]], default_locale: str
) -> dict[tuple[str, str], Contact]:
    """:func:`load_contact` of each (tenant, user) in one query, by (tenant, user)."""
    pairs = sorted(set(who))
    rows = await conn.fetch(_CONTACTS, [t for t, _ in pairs], [u for _, u in pairs])
    return {(r["tenant"], r["id"]): _contact_of(r, default_locale) for r in rows}


def _contact_of(row: asyncpg.Record, default_locale: str) -> Contact:
    prefs = {(c, Channel(ch)): bool(on) for c, ch, on in (json.loads(row["prefs"]) if row["prefs"] else ())}
    if row["timezone"] is None:  # no herald_recipients row: defaults
        return Contact(None, default_locale, "UTC", ZoneInfo("UTC"), None, prefs)
    try:
        zone = ZoneInfo(row["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")  # a bad zone in the table must not stop digests; UTC is the safe reading
    start: time | None = row["quiet_start"]
    end: time | None = row["quiet_end"]
    quiet = QuietWindow(start, end) if start is not None and end is not None else None
    digest = row["digest"] is not False
    return Contact(
        row["email"] or None, row["locale"] or default_locale, zone.key, zone, quiet, prefs, digest
    )
