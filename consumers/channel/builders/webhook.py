"""The webhook adapter: endpoint registry in PostgreSQL, SSRF-guarded pooled HTTP client."""

from __future__ import annotations

from channels.base import ChannelAdapter
from channels.webhook.endpoints_pg import EndpointStore
from channels.webhook.http import WebhookAdapter
from consumers.infra.resources import Resources
from consumers.runtime import metrics

__all__ = ["build"]


def _count_disabled(reason: str) -> None:
    metrics.WEBHOOK_ENDPOINTS_DISABLED.labels(reason).inc()


async def build(res: Resources) -> ChannelAdapter:
    return WebhookAdapter(
        EndpointStore(await res.pool()),
        res.settings.webhook,
        clock=res.clock.now,
        on_disabled=_count_disabled,
    )
