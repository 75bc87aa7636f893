"""Settings of the fallback consumer (``HERALD_FALLBACK__*``), declared beside it."""

from __future__ import annotations

from pydantic import BaseModel, Field, PositiveFloat

__all__ = ["FallbackSettings"]


class FallbackSettings(BaseModel, frozen=True):
    """The fallback consumer: retries, push→email escalation, the in-app digest, critical watch."""

    high_escalation_delay_s: float = Field(
        300.0, gt=0, description="High: email when no push receipt by then."
    )
    digest_after_s: float = Field(
        86_400.0, gt=0, description="Medium: in-app items unread this long are digested."
    )
    digest_window_s: float = Field(
        86_400.0, gt=0, description="At most one digest per user per (epoch) window."
    )
    digest_collect_s: float = Field(
        60.0, ge=0, description="A digest goes out this long after its first item joins (a burst shares one)."
    )
    digest_max_items: int = Field(
        10, gt=0, description="Items listed in a digest; the rest count as 'and N more'."
    )
    critical_check_after_s: float = Field(
        120.0, gt=0, description="Critical tier: alert when no channel sent within this of the event."
    )
    retry_schedules_s: dict[str, list[PositiveFloat]] = Field(
        default_factory=lambda: {
            "webhook": [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            "push": [5.0, 30.0, 120.0, 600.0],
            "email": [10.0, 60.0, 300.0, 1800.0],
            "sms": [10.0, 60.0, 300.0, 1800.0],
            "in_app": [1.0, 5.0, 30.0, 120.0],
        },
        description="Delay (s) before attempt n+1 after attempt n failed, per channel; then exhausted.",
    )
    unattempted_max_age_s: float = Field(
        86_400.0,
        gt=0,
        description="A send no provider was asked to take (every breaker open, recipient backing off, "
        "batch deadline) does not use up the retry schedule; where exhaustion does not escalate it is "
        "retried until this long after the message's first retry was planned, then exhausted.",
    )
    retry_jitter: float = Field(
        0.2, ge=0, le=1, description="Retry delays are spread uniformly within ± this fraction."
    )
    receipt_window_days: int = Field(30, gt=0, description="Sent messages kept this long for their receipts.")
