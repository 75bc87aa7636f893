"""The in-app adapter (the PostgreSQL inbox)."""

from __future__ import annotations

from channels.base import ChannelAdapter
from channels.inapp import InAppAdapter
from channels.inbox_pg import InboxService
from consumers.infra.resources import Resources

__all__ = ["build"]


async def build(res: Resources) -> ChannelAdapter:
    return InAppAdapter(InboxService(await res.pool()))
