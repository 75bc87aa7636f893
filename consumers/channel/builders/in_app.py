"""The in-app adapter (the PostgreSQL inbox)."""

from __future__ import annotations

from channels.base import ChannelAdapter
from channels.in_app.inbox import InAppAdapter
from channels.in_app.inbox_pg import InboxService
from consumers.infra.resources import Resources

__all__ = ["build"]


async def build(res: Resources) -> ChannelAdapter:
    return InAppAdapter(InboxService(await res.pool()))
