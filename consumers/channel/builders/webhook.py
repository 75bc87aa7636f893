"""The webhook adapter: endpoint registry in PostgreSQL, SSRF-guarded pooled HTTP client."""

from __future__ import annotations

from channels.base import ChannelAdapter
from channels.endpoints_pg import EndpointStore
from channels.webhook import WebhookAdapter, WebhookConfig
from consumers.infra.resources import Resources
from consumers.infra.settings import WebhookSettings
from consumers.runtime import metrics

__all__ = ["build", "webhook_config"]


def webhook_config(settings: WebhookSettings) -> WebhookConfig:
    return WebhookConfig(
        connect_timeout_s=settings.connect_timeout_s,
        total_timeout_s=settings.total_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        max_response_bytes=settings.max_response_bytes,
        allow_hosts=tuple(settings.allow_hosts),
        https_only=settings.https_only,
        disable_after_s=settings.disable_after_s,
        endpoint_cache_ttl_s=settings.endpoint_cache_ttl_s,
        max_connections_per_endpoint=settings.max_connections_per_endpoint,
        max_pooled_endpoints=settings.max_pooled_endpoints,
        user_agent=settings.user_agent,
    )


def _count_disabled(reason: str) -> None:
    metrics.WEBHOOK_ENDPOINTS_DISABLED.labels(reason).inc()


async def build(res: Resources) -> ChannelAdapter:
    return WebhookAdapter(
        EndpointStore(await res.pool()),
        webhook_config(res.settings.webhook),
        clock=res.clock.now,
        on_disabled=_count_disabled,
    )
