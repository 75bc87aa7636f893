"""Webhook settings (``HERALD_WEBHOOK__*``), apart from the adapter: reading settings imports no
httpx, asyncpg or redis."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["WebhookSettings"]


class WebhookSettings(BaseModel, frozen=True):
    """System-to-system webhooks (Standard Webhooks signatures, SSRF guard, endpoint registry).

    The one declaration of these knobs: Herald's settings object nests it as ``HERALD_WEBHOOK__*``.
    """

    connect_timeout_s: float = Field(5.0, gt=0, description="TCP (and TLS) connect timeout per attempt.")
    total_timeout_s: float = Field(15.0, gt=0, description="Whole attempt: connect, send, read the response.")
    max_body_bytes: int = Field(
        256 * 1024, gt=0, description="Larger bodies fail permanently (payload_too_large)."
    )
    max_response_bytes: int = Field(
        4096, ge=0, description="Response bytes read (kept as detail); rest dropped."
    )
    allow_hosts: tuple[str, ...] = Field((), description="IPs/CIDRs exempt from the SSRF guard.")
    https_only: bool = Field(False, description="Refuse plain-http endpoint URLs.")
    disable_after_s: float = Field(5 * 86_400.0, ge=0, description="Auto-disable after failing this long.")
    rotation_grace_s: float = Field(
        86_400.0, ge=0, description="After rotate-secret the old secret still signs this long."
    )
    endpoint_cache_ttl_s: float = Field(5.0, ge=0, description="How long a consumer caches an endpoint row.")
    max_connections_per_endpoint: int = Field(
        16, gt=0, description="Pooled HTTP connections per endpoint URL."
    )
    max_pooled_endpoints: int = Field(
        1024, gt=0, description="Connection pools kept; idle ones beyond are closed."
    )
    user_agent: str = Field("Herald-Webhooks/1", description="User-Agent header of every delivery.")
