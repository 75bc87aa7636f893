"""Which adapters serve which channel.

Adding a provider = one module in ``channels/<channel>/``, one builder, one line in
:data:`PROVIDER_BUILDERS`. A channel whose process uses one provider gets that adapter as is;
with several (``HERALD_PROVIDERS__EMAIL='["ses","smtp"]'``, or a per-lane / per-tier route) it gets
a :class:`~consumers.channel.failover.FailoverAdapter` over them, behind breakers shared in Redis.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from channels.base import ChannelAdapter
from channels.dry_run import DryRunAdapter
from consumers.channel.breaker import BreakerPolicy
from consumers.channel.breakers import Breakers
from consumers.channel.failover import FailoverAdapter, chain_providers
from consumers.infra.provider_settings import BreakerSettings
from consumers.infra.resources import Resources
from schemas.errors import ConfigurationError
from schemas.models import Channel, Lane

__all__ = ["PROVIDER_BUILDERS", "breaker_policy", "build_adapter", "build_provider"]

AdapterBuilder = Callable[[Resources], Awaitable[ChannelAdapter]]

# (channel, provider) -> "module:function"; imported only when configured.
PROVIDER_BUILDERS: dict[tuple[Channel, str], str] = {
    (Channel.EMAIL, "ses"): "consumers.channel.builders.email:build_ses",
    (Channel.EMAIL, "smtp"): "consumers.channel.builders.email:build_smtp",
    (Channel.SMS, "sns"): "consumers.channel.builders.sms:build_sns",
    (Channel.SMS, "twilio"): "consumers.channel.builders.sms:build_twilio",
    (Channel.PUSH, "fcm"): "consumers.channel.builders.push:build",
    (Channel.IN_APP, "inbox"): "consumers.channel.builders.in_app:build",
    (Channel.WEBHOOK, "webhook"): "consumers.channel.builders.webhook:build",
}

_ONLY_PROVIDER = {Channel.PUSH: "fcm", Channel.IN_APP: "inbox", Channel.WEBHOOK: "webhook"}


def breaker_policy(settings: BreakerSettings) -> BreakerPolicy:
    return BreakerPolicy(
        consecutive_failures=settings.consecutive_failures,
        error_rate=settings.error_rate,
        min_calls=settings.min_calls,
        window_s=settings.window_s,
        open_s=settings.open_s,
        half_open_probes=settings.half_open_probes,
    )


async def build_provider(channel: Channel, provider: str, resources: Resources) -> ChannelAdapter:
    """One provider's adapter, built from settings."""
    target = PROVIDER_BUILDERS.get((channel, provider))
    if target is None:
        known = sorted(p for c, p in PROVIDER_BUILDERS if c is channel)
        raise ConfigurationError(
            f"{channel.value}: unknown provider {provider!r} (known: {', '.join(known)})"
        )
    module, _, attr = target.partition(":")
    builder: AdapterBuilder = getattr(importlib.import_module(module), attr)
    return await builder(resources)


async def build_adapter(channel: Channel, resources: Resources, lane: Lane = Lane.PRIORITY) -> ChannelAdapter:
    """The adapter a ``channel``/``lane`` process delivers through."""
    if resources.settings.channel.dry_run:
        return DryRunAdapter(channel)
    providers = resources.settings.providers
    names = (
        (_ONLY_PROVIDER[channel],) if channel in _ONLY_PROVIDER else chain_providers(providers, channel, lane)
    )
    if not names:
        raise ConfigurationError(
            f"{channel.value}: no provider configured (HERALD_PROVIDERS__{channel.name})"
        )
    adapters = {name: await build_provider(channel, name, resources) for name in names}
    if len(adapters) == 1:
        return next(iter(adapters.values()))
    breaker = providers.breaker
    breakers = Breakers(
        resources.redis(),
        channel=channel.value,
        policy=breaker_policy(breaker),
        namespace=f"{resources.settings.topic_prefix}:breaker",
        timeout_s=breaker.redis_timeout_s,
        local_for_s=breaker.local_for_s,
    )
    return FailoverAdapter(channel, adapters, providers=providers, breakers=breakers)
