"""Settings of the per-channel provider chains, their breakers and the provider feedback endpoints.
Part of the one settings object (:mod:`consumers.infra.settings`). Each provider's own knobs sit
beside its adapter (``channels.email.smtp.SmtpSettings``, ``channels.sms.twilio.TwilioSettings``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from schemas.models import Channel, Lane, Tier

__all__ = ["BreakerSettings", "FeedbackSettings", "ProvidersSettings"]


class BreakerSettings(BaseModel, frozen=True):
    """The circuit breaker of each provider, shared by every replica through Redis."""

    consecutive_failures: int = Field(
        5, gt=0, description="Open after this many retryable failures in a row."
    )
    error_rate: float = Field(
        0.5, gt=0, le=1, description="... or this share of retryable failures in the window."
    )
    min_calls: int = Field(20, gt=0, description="Calls the window must hold before the error rate counts.")
    window_s: float = Field(30.0, gt=0, description="The error-rate window.")
    open_s: float = Field(
        15.0, gt=0, description="An open breaker refuses this long, then lets probes through."
    )
    half_open_probes: int = Field(3, gt=0, description="Probes at once, and successes needed to close.")
    redis_timeout_s: float = Field(0.25, gt=0, description="A slower Redis counts as down for the breaker.")
    local_for_s: float = Field(
        5.0, ge=0, description="After a Redis error, use the process-local breaker this long."
    )


class FeedbackSettings(BaseModel, frozen=True):
    """Provider feedback endpoints of the API: SES events through SNS, Twilio status callbacks."""

    sns_cert_host_pattern: str = Field(
        r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?",
        description="Regex an SNS SigningCertURL / SubscribeURL host must match in full.",
    )
    sns_cert_scheme: Literal["https", "http"] = Field(
        "https", description="Scheme of those URLs (http: dev only)."
    )
    sns_topic_arns: list[str] = Field(
        default_factory=list,
        description="SNS topics whose messages are accepted (and subscriptions confirmed); empty: SES "
        "feedback is off and POST /v1/providers/ses/events answers 404.",
    )
    fetch_timeout_s: float = Field(
        5.0, gt=0, description="Fetching a signing certificate or confirming a subscription."
    )


class ProvidersSettings(BaseModel, frozen=True):
    """Providers per channel, in failover order. A channel with one provider has no breaker."""

    email: list[str] = Field(["ses"], description="Email providers in order: ses, smtp.")
    sms: list[str] = Field(["sns"], description="SMS providers in order: sns, twilio.")
    by_lane: dict[Lane, dict[Channel, list[str]]] = Field(
        default_factory=dict, description="Per-lane override, e.g. {bulk: {email: [smtp, ses]}}."
    )
    by_tier: dict[Tier, dict[Channel, list[str]]] = Field(
        default_factory=dict, description="Per-tier override (wins over by_lane), e.g. a premium route."
    )
    breaker: BreakerSettings = BreakerSettings()
    feedback: FeedbackSettings = FeedbackSettings()
