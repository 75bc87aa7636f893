"""The admin API's settings (``HERALD_ADMIN__*``), declared beside it; part of the one settings object."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["AdminSettings"]


class AdminSettings(BaseModel, frozen=True):
    """Service API keys, recipients and ``POST /v1/events`` (served by ``herald run api``)."""

    key_pepper: SecretStr | None = Field(
        None,
        description="HMAC key under which service API keys are hashed (32+ random bytes; changing it "
        "invalidates every key); unset: the admin routes are not served and `herald keys` refuses.",
    )
    key_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long an API process trusts a key row it read: a revoked key works at most this long.",
    )
    key_lookups_per_client: int = Field(
        300,
        ge=0,
        description="Failed lookups of API keys (unknown, revoked or wrong secret) and console login "
        "credentials one client address (IPv6: its /64) may cause per window; over it, lookups of key "
        "ids this process has not verified recently get 429. 0 = unlimited.",
    )
    key_lookups_window_s: int = Field(60, gt=0, description="Window of key_lookups_per_client.")
    key_lookups_remember_s: float = Field(
        3600.0,
        gt=0,
        description="How long a key id this process verified is still looked up for a client over "
        "key_lookups_per_client (a proxy's clients share its address).",
    )
    key_lookups_prefix: str = Field(
        "herald:api:keylookup", description="Redis keys counting failed key lookups."
    )
    key_last_used_flush_s: float = Field(
        30.0, gt=0, description="How often keys' last use is written to PostgreSQL."
    )
    recipient_properties_max_bytes: int = Field(
        8192, gt=0, description="Largest custom properties object of a recipient (JSON bytes)."
    )
    batch_max_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest body of POST /v1/events and POST /v1/recipients:batch."
    )
    events_batch_max: int = Field(500, gt=0, description="Most events in one POST /v1/events.")
    event_dedupe_ttl_s: int = Field(
        86_400,
        gt=0,
        description="POST /v1/events: a repeated event id within this is acknowledged, not re-sent.",
    )
    event_pending_ttl_s: int = Field(
        60,
        gt=0,
        description="POST /v1/events: how long an event id whose send is not acked yet holds off a "
        "repeat (503, Retry-After: what is left of it); a send not acked within it is given up (503).",
    )
    event_dedupe_prefix: str = Field("herald:api:event", description="Redis keys of emitted event ids.")
