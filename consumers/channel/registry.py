"""Which adapter serves which channel. Adding a provider = one module in channels/ + one line here."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from channels.base import ChannelAdapter
from channels.dry_run import DryRunAdapter
from consumers.infra.resources import Resources
from schemas.models import Channel

__all__ = ["ADAPTER_BUILDERS", "build_adapter"]

AdapterBuilder = Callable[[Resources], Awaitable[ChannelAdapter]]

ADAPTER_BUILDERS: dict[Channel, str] = {
    Channel.EMAIL: "consumers.channel.builders.email:build",
    Channel.SMS: "consumers.channel.builders.sms:build",
    Channel.PUSH: "consumers.channel.builders.push:build",
    Channel.IN_APP: "consumers.channel.builders.in_app:build",
    Channel.WEBHOOK: "consumers.channel.builders.webhook:build",
}


async def build_adapter(channel: Channel, resources: Resources) -> ChannelAdapter:
    if resources.settings.channel.dry_run:
        return DryRunAdapter(channel)
    module, _, attr = ADAPTER_BUILDERS[channel].partition(":")
    builder: AdapterBuilder = getattr(importlib.import_module(module), attr)
    return await builder(resources)
