"""A provider that sends nothing and reports success: dry runs, staging, load tests.

Enabled per process with ``HERALD_CHANNEL__DRY_RUN=true``; outcomes say ``provider=dry_run``
so a dry-run delivery is never mistaken for a real one.
"""

from __future__ import annotations

from channels.base import Content, Outcome
from schemas.models import Channel, ChannelMessage

__all__ = ["DryRunAdapter"]


class DryRunAdapter:
    provider = "dry_run"

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        return Outcome.sent(self.provider, f"dry-run:{idempotency_key}")

    async def close(self) -> None:
        return None
